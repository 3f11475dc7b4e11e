#!/usr/bin/env bash
# Prints the Markdown table of BENCHMARKS.md's channels section from the raw
# JSON that `bench/scripts/report.sh channels` wrote: one row per rate and
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
		jq -s -r --arg rate "$rate" --arg name "$name" '
			def r(f; fmt): (map(f) | min | fmt) as $a | (map(f) | max | fmt) as $b | if $a == $b then $a else "\($a)-\($b)" end;
			def ms: . / 1000 | if . >= 100 then round | tostring else (. * 10 | round / 10 | tostring) end;
			def n0: round | tostring;
			def c2: . * 100 | round / 100 | tostring;
			def via: if .Config.Channels == 0 then "ws (binary)" elif (.Config.PublishURL // "") == "" then "ws publish op" elif (.Config.Batch // 1) > 1 then "http batch \(.Config.Batch)" else "http" end;
			"| \($rate) | \($name) | \(.[0].Config.Channels | if . == 0 then "room" else tostring end) | \(.[0] | via) | \(.[0].Config.Publishers) | " +
			"\(r(.PublishedPS; n0)) | \(r(.DeliveriesPS; n0)) | \(r(.Missing; n0)) | \(r(.P50us; ms)) ms | \(r(.P90us; ms)) ms | \(r(.P99us; ms)) ms | " +
			"\(r(.P999us; ms)) ms | \(r(.MaxUS; ms)) ms | " +
			"\(if (.[0].APIP50us // 0) > 0 then "\(r(.APIP50us; ms)) / \(r(.APIP99us; ms)) ms" else "" end) | " +
			"\(r(.ServerRSSEnd / 1048576; n0)) MiB | \(r(.ServerCPU; c2)) | \(r(.GeneratorCPU; c2)) | \(r(.MachineCPU - .ServerCPU - .GeneratorCPU | if . < 0 then 0 else . end; c2)) |"
		' "${files[@]}"
	done
done
