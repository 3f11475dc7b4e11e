#!/usr/bin/env bash
# Every run of the 9824246 section of BENCHMARKS.md, one at a time, the
# servers alternating. BIN holds fanout and fanout-bench built at 9824246
# (BIN=/tmp/s3/final2 bench/peers/start.sh); BASE holds fanout built at
# 38e651e (the commit before this work); bench/peers/uws is installed.
cd "$(dirname "$0")"
export BIN=${BIN:-/tmp/s3/final2}
one() { ../2026-12-01-7af209a/perf/one.sh "$@"; } # the 7af209a section's runner
F="$BIN/fanout -addr 127.0.0.1:9460 -log-level warn -admin-addr 127.0.0.1:9461"
B="${BASE:-/tmp/s3/base}/fanout -addr 127.0.0.1:9460 -log-level warn -admin-addr 127.0.0.1:9461"
U="node $(cd ../../.. && pwd)/bench/peers/uws/server.js 9460"
three() { # part rounds
	for _ in $(seq "$2"); do
		one fanout-9824246 "$F" "$1" . >/dev/null
		one uws "$U" "$1" . >/dev/null
		one fanout-38e651e "$B" "$1" . >/dev/null
	done
}
three echo 3
three t19000x5 2
three t19000x20 2
three t5000x76 3
one fanout-9824246 "$F" idle . >/dev/null
one fanout-9824246 "$F" ceiling . >/dev/null
one uws "$U" ceiling . >/dev/null
NOPIN=1 one fanout-9824246-unpinned "$F" ceiling . >/dev/null
one fanout-9824246 "$F" slow . >/dev/null
