#!/usr/bin/env bash
# Prints BENCHMARKS.md's tables for issue 9's peer runs from the JSON that
# bench/scripts/peers.sh wrote (one row per part, server and round); PARTS
# names the parts (wss.sh's: PARTS="t19000x5 t19000x20 t5000x76 idle19000
# storm5000x128" SERVERS="fanout uws").
#   bench/scripts/peers-table.sh bench/results/<date>-<commit>/peers
set -euo pipefail
dir=${1:?peers results directory}
servers=${SERVERS:-fanout uws nbio gorilla node}
row() { # file: broadcast/echo row
	jq -r --arg f "$(basename "$1" .json)" '.label as $l | .result |
		def ms: if . >= 100 then (. | round | tostring) else (. * 100 | round / 100 | tostring) end;
		(.config.conns | tostring) as $n |
		"| \($f | split("-") | .[0]) | \($l) | \($f | split("-") | .[2]) | \(.deliveries_per_s | round) | \(.missing) | \(.disconnected) | " +
		"\(.p50_ms | ms) | \(.p99_ms | ms) | \(.p99_9_ms | ms) | \(.max_ms | ms) | \(.server_cpu_s * 10 | round / 10) s | " +
		"\(.server_cpu_us_per_delivery * 100 | round / 100) µs | \(if .write_path then (.write_path.writes_per_delivery * 1000 | round / 1000 | tostring) else "-" end) | " +
		"\((.published_per_s // 0) | round) |"' "$1"
}
echo "| part | server | round | deliveries/s (echo: round trips/s) | missing | disconnected | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | CPU/delivery | writes/delivery | published/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
parts=${PARTS:-t19000x2 t19000x5 t19000x20 t5000x76 echo ceiling}
files() { for s in $servers; do ls "$dir/$1-$s"-r*.json 2>/dev/null; done; }
for part in $parts; do
	[[ $part == t*x* || $part == echo ]] || continue
	for f in $(files "$part"); do row "$f"; done
done
for part in $parts; do
	[[ $part == idle* ]] || continue
	echo
	echo "| idle | server | round | connections | RSS/conn | generator RSS/conn |"
	echo "|---|---|---|---|---|---|"
	for f in $(files "$part"); do
		jq -r --arg f "$(basename "$f" .json)" '.label as $l | .result |
			"| \($f | split("-") | .[0]) | \($l) | \($f | split("-") | .[2]) | \(.connected) | \(.rss_per_conn_bytes | round) B | \((.generator_rss_per_conn_bytes // 0) | round) B |"' "$f"
	done
done
for part in $parts; do
	[[ $part == storm* ]] || continue
	echo
	echo "| storm | server | round | handshakes/s | failed | handshake p50 ms | p99 ms | subscribers | deliveries/s | missing | subscribers' p99 ms | server CPU | generator CPU (cores) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for f in $(files "$part"); do
		jq -r --arg f "$(basename "$f" .json)" '.label as $l | .result |
			"| \($f | split("-") | .[0]) | \($l) | \($f | split("-") | .[2]) | \(.storm.handshakes_per_s | round) | \(.storm.failed) | " +
			"\(.storm.p50_ms * 10 | round / 10) | \(.storm.p99_ms * 10 | round / 10) | \(.connected) | \(.deliveries_per_s | round) | \(.missing) | " +
			"\(.p99_ms * 10 | round / 10) | \(.server_cpu_s * 10 | round / 10) s | \(.generator_cpu_cores * 100 | round / 100) |"' "$f"
	done
done
[[ " $parts " == *" ceiling "* ]] || exit 0
echo
echo "| ceiling (5,000 subscribers) | server | round | highest rate kept up (msg/s) | offered deliveries/s | delivered/s | p99 ms | phases (msg/s: kept up or why not) |"
echo "|---|---|---|---|---|---|---|---|"
for f in $(files ceiling); do
	jq -r --arg f "$(basename "$f" .json)" '.label as $l | .ceiling |
		"| ceiling | \($l) | \($f | split("-") | .[2]) | \(.msg_per_s * 10 | round / 10) | \(.offered_per_s | round) | \(.deliveries_per_s | round) | \(.p99_ms * 10 | round / 10) | " +
		([.phases[] | "\(.config.msg_per_s * 10 | round / 10): \(if .kept_up then "yes" else .why end)"] | join("; ")) + " |"' "$f"
done
