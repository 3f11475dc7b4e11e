#!/usr/bin/env bash
# Prints the Markdown table of BENCHMARKS.md's channels section from the raw
# JSON that `bench/scripts/report.sh channels` wrote (fanout-bench's
# snake_case document; results before 2026-12-01's issue 13 change used Go
# field names and need the script of their commit): one row per rate and
# configuration, each figure as min-max over the rounds.
#   bench/scripts/channels-table.sh bench/results/<date>-<commit> [rate]
set -euo pipefail
dir=$1
rates=${2:-$(ls "$dir"/channels-*.json | sed -E 's/.*channels-([0-9.]+)-.*/\1/' | sort -un)}
echo "| msg/s per channel | config | channels | publish via | publishers | published/s | deliveries/s | missing | p50 | p90 | p99 | p99.9 | max | API round trip p50 / p99 | server RSS end | server CPU | generator CPU | other CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $rates; do
	for name in room k1-ws k1-http k10-ws k10-http k1000-ws k1000-http k1000-http-batch10; do
		files=("$dir"/channels-"$rate"-"$name"-[0-9]*.json)
		[[ -e ${files[0]} ]] || continue
		jq -s -r --arg rate "$rate" --arg name "$name" 'map(.result) |
			def r(f; fmt): (map(f) | min | fmt) as $a | (map(f) | max | fmt) as $b | if $a == $b then $a else "\($a)-\($b)" end;
			def ms: if . >= 100 then round | tostring else (. * 10 | round / 10 | tostring) end;
			def n0: round | tostring;
			def c2: . * 100 | round / 100 | tostring;
			def via: if (.config.channels // 0) == 0 then "ws (binary)" elif (.config.publish_url // "") == "" then "ws publish op" elif (.config.batch // 1) > 1 then "http batch \(.config.batch)" else "http" end;
			"| \($rate) | \($name) | \(.[0].config.channels // 0 | if . == 0 then "room" else tostring end) | \(.[0] | via) | \(.[0].config.publishers) | " +
			"\(r(.published_per_s; n0)) | \(r(.deliveries_per_s; n0)) | \(r(.missing; n0)) | \(r(.p50_ms; ms)) ms | \(r(.p90_ms; ms)) ms | \(r(.p99_ms; ms)) ms | " +
			"\(r(.p99_9_ms; ms)) ms | \(r(.max_ms; ms)) ms | " +
			"\(if (.[0].api_p50_ms // 0) > 0 then "\(r(.api_p50_ms; ms)) / \(r(.api_p99_ms; ms)) ms" else "" end) | " +
			"\(r(.server_rss_end_bytes / 1048576; n0)) MiB | \(r(.server_cpu_cores; c2)) | \(r(.generator_cpu_cores; c2)) | \(r(.machine_cpu_cores - .server_cpu_cores - .generator_cpu_cores | if . < 0 then 0 else . end; c2)) |"
		' "${files[@]}"
	done
done
