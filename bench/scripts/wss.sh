#!/usr/bin/env bash
# Issue 19's wss table: Fanout against uWebSockets.js SSLApp over TLS with
# one ECDSA P-256 certificate (bench/peers/cert.sh), one pinned core per
# side, 64-byte messages, fresh server per run, servers alternating within
# each part, $ROUNDS rounds: bench/scripts/peers.sh with SCHEME=wss, whose
# parts are
#   t19000x5 t19000x20 t5000x76   subscribers x msg/s
#   idle19000                     RSS per idle wss connection at 19,000
#   storm5000x128                 new TLS connections per second (128 churners opening and closing)
#                                 with 5,000 established subscribers at 5 msg/s: their p99 meanwhile
# Raw JSON, tables, server logs and charts go to bench/results/<date>-<commit>/wss/.
#   bench/scripts/wss.sh                  # everything, 2 rounds
#   bench/scripts/wss.sh 1 t19000x20      # round 1, one part
#   DURATION=2s bench/scripts/wss.sh 1 t200x5 idle200 storm200x8   # a smoke run (seconds)
# Tables for BENCHMARKS.md: PARTS="..." SERVERS="fanout uws" bench/scripts/peers-table.sh <out>.
set -euo pipefail
export SCHEME=wss PARTS=${PARTS:-t19000x5 t19000x20 t5000x76 idle19000 storm5000x128}
exec "$(dirname "$0")/peers.sh" "$@"
