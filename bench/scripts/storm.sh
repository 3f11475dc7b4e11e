#!/usr/bin/env bash
# Reconnect storm (issue 21): three fanout nodes on one redis-server,
# CONNS subscribers of one channel spread over them (bench/storm, clients
# that follow README's reconnect rules), RATE messages/s published through
# a survivor's HTTP API; after BEFORE one node is drained (SIGTERM) or
# killed (SIGKILL) mid-broadcast. Each event runs twice, on fresh nodes:
# "paced" (-drain-duration DRAIN, -max-handshake-rate HS_RATE,
# -max-replay-rate REPLAY_RATE) and "today" (-drain-duration 0: 1001 to
# everyone at once; no admission or replay bound). Reports per run: time
# until every dropped client is back, the survivors' handshakes/s (average
# and peak) and refusals, their delivery p99 before and during the storm,
# and messages missing after recovery. Loopback only; every run stops by
# itself. Raw JSON and logs go to bench/results/<date>-<commit>-storm/.
#   bench/scripts/storm.sh                          (18,000 clients; about 5 minutes)
#   CONNS=300 BEFORE=2s AFTER=1s DRAIN=3s bench/scripts/storm.sh   (a smoke test, under a minute)
#   NODES=2 EVENTS=kill HS_RATE=3000 bench/scripts/storm.sh   (9,000 clients onto one node at once)
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${CONNS:-18000} rate=${RATE:-5} before=${BEFORE:-10s} after=${AFTER:-5s}
drain=${DRAIN:-30s} hs_rate=${HS_RATE:-2000} replay_rate=${REPLAY_RATE:-2000}
events=${EVENTS:-drain kill} variants=${VARIANTS:-paced today}
nodes_n=${NODES:-3} # NODES=2: the survivor takes every dropped client at once
. bench/scripts/lib.sh
begin_run storm cmd/fanout bench/storm
pids=()
kill_now() { # SIGKILL (not lib.sh's stop): the nodes' drains are not measured here
	local p
	for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
	kill_now "${pids[@]}" ${rpid:+"$rpid"}
	rm -rf "$tmp"
}
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), ulimit -n $(ulimit -n)" | log
echo "NODES=$nodes_n CONNS=$conns RATE=$rate BEFORE=$before AFTER=$after DRAIN=$drain HS_RATE=$hs_rate REPLAY_RATE=$replay_rate" | log

start_redis
key=$(head -c 24 /dev/urandom | base64)

for event in $events; do
	for variant in $variants; do
		case $variant in
		paced) flags=(-drain-grace 1s -drain-duration "$drain" -max-handshake-rate "$hs_rate" -max-replay-rate "$replay_rate") ;;
		today) flags=(-drain-duration 0) ;;
		esac
		nodes=() admins=() pids=()
		for i in $(seq 0 $((nodes_n - 1))); do
			port=$(free_port) admin=$(free_port)
			FANOUT_API_KEY=$key "$tmp/fanout" -addr "127.0.0.1:$port" -admin-addr "127.0.0.1:$admin" \
				-broker "redis://127.0.0.1:$rport/0" -log-level warn "${flags[@]}" 2>"$out/$event-$variant-node$i.log" &
			pids+=($!) nodes+=("127.0.0.1:$port") admins+=("127.0.0.1:$admin")
		done
		for a in "${admins[@]}"; do
			for _ in $(seq 100); do curl -fs "http://$a/readyz" >/dev/null && break; sleep 0.1; done
		done
		echo "## $event, $variant: fanout ${flags[*]}" | log
		cmd=("$tmp/storm" -nodes "$(IFS=,; echo "${nodes[*]}")" -admins "$(IFS=,; echo "${admins[*]}")"
			-victim 0 -pid "${pids[0]}" -event "$event" -clients "$conns" -rate "$rate" -channel "storm-$event-$variant"
			-before "$before" -after "$after")
		echo "storm ${cmd[*]:1}" | sed "s#$tmp/##g" | log
		FANOUT_API_KEY=$key "${cmd[@]}" >"$out/$event-$variant.txt"
		tail -3 "$out/$event-$variant.txt" | log
		kill_now "${pids[@]}"
	done
done
echo "raw: $out" >&2
