#!/usr/bin/env bash
# Backend hooks under load (issue 22): one fanout node whose connect hook
# (-proxy-connect-url, the session cookie forwarded with -proxy-headers
# Cookie) is the Express app of cmd/fanout/testdata/interop/backend.mjs,
# on the same machine. CONNS subscribers of the /ws room are admitted
# through the hook at up to RATE/s (the ramp shows what the node and its
# backend admitted), then MSG_RATE broadcasts/s go to them for DURATION
# while CHURNERS clients connect through the hook and close, again and
# again. Twice, on fresh processes: "fast" (the backend answers at once)
# and "slow" (from the end of the ramp every connect is answered DELAY_MS
# late; -proxy-timeout 5s lets them through). Reported: admissions/s, the churners' connect-to-101 latency (the
# hook's round trip included) and the established subscribers' delivery
# p99 in each. Loopback only; every run stops by itself. Raw JSON and logs
# go to bench/results/<date>-<commit>-hooks/.
#   bench/scripts/hooks.sh                           (19,000 subscribers; about 3 minutes)
#   CONNS=500 DURATION=5s bench/scripts/hooks.sh     (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${CONNS:-19000} rate=${RATE:-20000} msg_rate=${MSG_RATE:-5} duration=${DURATION:-20s}
churners=${CHURNERS:-200} delay_ms=${DELAY_MS:-2000}
interop=cmd/fanout/testdata/interop
[[ -d $interop/node_modules/express ]] || { echo "needs express: make deps" >&2; exit 1; }
. bench/scripts/lib.sh
begin_run hooks cmd/fanout cmd/fanout-bench
pids=()
cleanup() {
	exec 9>&- # the backend exits at the end of its stdin
	stop "${pids[@]}"
	rm -rf "$tmp"
}
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), node $(node --version), ulimit -n $(ulimit -n)" | log
echo "CONNS=$conns RATE=$rate MSG_RATE=$msg_rate DURATION=$duration CHURNERS=$churners DELAY_MS=$delay_ms" | log
echo | log
echo "| backend | subscribers | admitted/s (ramp) | churn upgrades/s | churn connect to 101 p50 / p99 | deliveries | missing / lost | subscribers' p50 | p99 | server CPU (cores) |" | log
echo "|---|---|---|---|---|---|---|---|---|---|" | log
for variant in fast slow; do
	rm -f "$tmp/backend.in" && mkfifo "$tmp/backend.in"
	node "$interop/backend.mjs" <"$tmp/backend.in" >"$tmp/backend.port" 2>"$out/$variant-backend.log" &
	pids=($!)
	exec 9>"$tmp/backend.in"
	for _ in $(seq 100); do [[ -s $tmp/backend.port ]] && break; sleep 0.1; done
	backend="http://127.0.0.1:$(head -1 "$tmp/backend.port")"
	port=$(free_port) admin=$(free_port)
	"$tmp/fanout" -addr "127.0.0.1:$port" -admin-addr "127.0.0.1:$admin" -log-level warn \
		-proxy-connect-url "$backend/connect" -proxy-headers Cookie -proxy-timeout 5s 2>"$out/$variant-node.log" &
	fpid=$!
	pids+=("$fpid")
	for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
	cmd=("$tmp/fanout-bench" -url "ws://127.0.0.1:$port/ws" -scenario broadcast -conns "$conns" -rate "$rate"
		-msg-rate "$msg_rate" -churners "$churners" -duration "$duration" -settle 10s -header "Cookie: session=ok"
		-server-pid "$fpid" -label "fanout, $variant backend" -json "$out/$variant.json" -quiet)
	echo "fanout-bench ${cmd[*]:1}" | sed "s#$tmp/##g" >>"$out/commands.txt"
	"${cmd[@]}" >"$out/$variant.txt" 2>&1 &
	gen=$!
	# The backend turns slow once the subscribers are in (within -settle).
	for _ in $(seq 600); do
		open=$(curl -fs "http://127.0.0.1:$admin/metrics" | awk '$1 == "fanout_connections_open" {print $2}')
		(($(printf '%.0f' "${open:-0}") >= conns)) && break
		sleep 0.5
	done
	[[ $variant == slow ]] && curl -fs -X POST -H 'Content-Type: application/json' -d "{\"ms\":$delay_ms}" "$backend/delay" >/dev/null
	wait "$gen" || echo "$variant: fanout-bench failed (see $out/$variant.txt)" | log
	if [[ -s $out/$variant.json ]]; then
		jq -r --arg v "$variant" '.result |
			def ms: (. * 10 | round / 10 | tostring) + " ms";
			"| \($v) | \(.connected) | \(.connected / .ramp_s | round) | \(.storm.handshakes_per_s | round) | \(.storm.p50_ms | ms) / \(.storm.p99_ms | ms) | \(.deliveries) | \(.missing) / \(.lost) | \(.p50_ms | ms) | \(.p99_ms | ms) | \(.server_cpu_cores * 100 | round / 100) |"' \
			"$out/$variant.json" | log
	fi
	exec 9>&-
	stop "${pids[@]}"
	pids=()
done
echo | log
echo "Commands: commands.txt (fanout: -proxy-connect-url <backend>/connect -proxy-headers Cookie -proxy-timeout 5s)" | log
echo "raw: $out" >&2
