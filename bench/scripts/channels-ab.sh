#!/usr/bin/env bash
# One node's channels latency, commit A against commit B (issue 20's "no
# regression"): 19,000 subscribers over 1,000 channels (16 publishers) and
# over 10 (10 publishers), 2 msg/s per channel through the HTTP API, as in
# report.sh's channels target, 20 s each, the two builds alternating over
# ROUNDS rounds. Loopback only; every run stops by itself. Raw JSON goes to
# bench/results/<date>-<B>-channels-ab/.
#   bench/scripts/channels-ab.sh 48bcba0 HEAD                  (about 5 minutes)
#   ROUNDS=1 DURATION=2s bench/scripts/channels-ab.sh HEAD HEAD (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/scripts/lib.sh
a=$(git rev-parse --short "$1") b=$(git rev-parse --short "$2")
begin_run "channels-ab" cmd/fanout-bench
out=${out/$(git rev-parse --short HEAD)/$b}
mkdir -p "$out"
for c in "$a" "$b"; do
	git worktree add -q --detach "$tmp/src-$c" "$c"
	(cd "$tmp/src-$c" && go build -o "$tmp/fanout-$c" ./cmd/fanout)
	git worktree remove --force "$tmp/src-$c"
done
trap 'rm -rf "$tmp"' EXIT
key=bench-api-key-0123456
echo "# $(date -u +%FT%TZ) $a against $b, $(nproc) cores, $(go version | cut -d' ' -f3)" | log
for round in $(seq "${ROUNDS:-2}"); do
	for k in 1000 10; do
		for c in "$a" "$b"; do
			"$tmp/fanout-bench" -url ws://127.0.0.1:9400/ws -scenario broadcast -conns 19000 -msg-rate 2 -size 64 -channels $k \
				-publishers $((k == 1000 ? 16 : 10)) -publish-url http://127.0.0.1:9400/api/publish -api-key $key -duration "${DURATION:-20s}" -settle 3s \
				-server-cmd "$tmp/fanout-$c -addr 127.0.0.1:9400 -log-level warn -api-key $key" -label "$c k$k" \
				-json "$out/k$k-$c-$round.json" >/dev/null
			jq -r --arg n "$c, $k channels, round $round" '.result | "\($n): p50 \(.p50_ms) ms p99 \(.p99_ms) ms, missing \(.missing) lost \(.lost) reordered \(.reordered), API p50 \(.api_p50_ms) ms, server CPU \(.server_cpu_cores) cores"' \
				"$out/k$k-$c-$round.json" | log
		done
	done
done
echo "raw results in $out" | log
