#!/usr/bin/env bash
# Redis against RabbitMQ as Fanout's broker, in one run (issue 14): three
# fanout nodes on one address (-reuseport) joined by each broker in turn,
# 19,000 subscribers over 1,000 channels (1 msg/s each) and on one channel
# (5 msg/s), 64-byte messages published through the HTTP API (10
# publishers; one for one channel). fanout-bench gives publish-to-delivery latency, the API's
# round trip, and the broker's CPU and RSS over the measured window
# (-broker-pid). Loopback only; every run stops by itself. Raw JSON and logs
# go to bench/results/<date>-<commit>-brokers/.
#   bench/scripts/brokers.sh [ROUNDS [FIRST]]   (default 1 round, numbered from 1; about 4
#   minutes a round; even rounds run RabbitMQ first)
#   CONNS=300 DURATION=3s bench/scripts/brokers.sh   (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-1} first=${2:-1}
. bench/scripts/lib.sh
begin_run brokers cmd/fanout cmd/fanout-bench
pids=()
cleanup() {
	stop "${pids[@]}" ${rpid:+"$rpid"}
	stop_rabbitmq
	rm -rf "$tmp"
}
trap cleanup EXIT
wait_quiet() { # at most 60 s for under 0.15 busy cores over 3 s
	local start=$SECONDS a b
	while ((SECONDS - start < 60)); do
		a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 3
		b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
		((b - a < 45)) && return
	done
	echo "machine still busy after 60 s; measuring anyway" >&2
}
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), ulimit -n $(ulimit -n)" | log

# Redis without persistence, as in report.sh's broker target.
start_redis

start_rabbitmq

port=$(free_port) key=bench-api-key-0123456
addr=127.0.0.1:$port
admins=($(free_port) $(free_port) $(free_port))
run() { # run BROKER NAME CHANNELS MSG/S
	local broker=$1 name=$2 k=$3 rate=$4 url bpid i
	case $broker in
	redis) url=redis://127.0.0.1:$rport/0 bpid=$rpid; redis-cli -p "$rport" flushall >/dev/null ;;
	rabbitmq) url="rabbitmq-stream://guest:guest@127.0.0.1:$sport/?stream=$name" bpid=$beam ;;
	esac
	pids=()
	for i in 0 1 2; do
		"$tmp/fanout" -log-level info -api-key $key -addr "$addr" -reuseport -broker "$url" \
			-admin-addr "127.0.0.1:${admins[$i]}" >"$out/$name-node$i.log" 2>&1 &
		pids+=($!)
	done
	for i in 0 1 2; do
		for _ in $(seq 300); do curl -fs "http://127.0.0.1:${admins[$i]}/readyz" >/dev/null && break; sleep 0.1; done
	done
	wait_quiet
	"$tmp/fanout-bench" -url "ws://$addr/ws" -scenario broadcast -conns "${CONNS:-19000}" -rate 5000 -channels "$k" -publishers $((k < 10 ? k : 10)) \
		-msg-rate "$rate" -size 64 -publish-url "http://$addr/api/publish" -api-key $key -duration "${DURATION:-20s}" -settle 5s -drain 5s \
		-server-pid "$(IFS=,; echo "${pids[*]}")" -broker-pid "$bpid" -label "fanout x3 $broker" -json "$out/$name.json" | log
	stop "${pids[@]}"
	pids=()
	jq -r --arg n "$name" '.result | "\($n): p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, API p50 \(.api_p50_ms) ms p99 \(.api_p99_ms) ms, published/s \(.published_per_s), missing \(.missing), lost \(.lost), publish errors \(.publish_errors // 0), broker CPU \(.broker_cpu_cores) cores, broker RSS \(.broker_rss_end_bytes / 1048576 | floor) MiB, servers CPU \(.server_cpu_cores) cores"' "$out/$name.json" | log
}
for round in $(seq "$first" $((first + rounds - 1))); do
	order="redis rabbitmq"
	((round % 2)) || order="rabbitmq redis"
	for spec in 1000:1 1:5; do
		k=${spec%%:*} rate=${spec##*:}
		for broker in $order; do
			run "$broker" "k$k-$broker-$round" "$k" "$rate"
		done
	done
done
echo "raw results in $out" | log
