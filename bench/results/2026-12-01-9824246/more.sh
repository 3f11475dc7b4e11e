#!/usr/bin/env bash
# The extra rounds (after all.sh) for the parts where Fanout and uWS.js were
# within run-to-run noise: echo, 19,000 x 5/s and 5,000 x 76/s, alternating.
cd "$(dirname "$0")"
export BIN=${BIN:-/tmp/s3/final2}
one() { ../2026-12-01-7af209a/perf/one.sh "$@"; } # the 7af209a section's runner
F="$BIN/fanout -addr 127.0.0.1:9460 -log-level warn -admin-addr 127.0.0.1:9461"
U="node $(cd ../../.. && pwd)/bench/peers/uws/server.js 9460"
for part in echo t19000x5 t5000x76; do
	for _ in 1 2 3; do
		one fanout-9824246 "$F" $part . >/dev/null
		one uws "$U" $part . >/dev/null
	done
done
