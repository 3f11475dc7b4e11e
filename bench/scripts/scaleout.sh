#!/usr/bin/env bash
# Scale-out through the brokers (issue 20), in one run:
# 1. Interest routing: six fanout nodes on their own ports joined by one
#    redis-server, 1,002 channels (a multiple of six), channel c's
#    subscribers only on node c mod 6, every channel published through node
#    0's HTTP API. Per node: CPU over the window and the broker metrics
#    (unwanted messages, subscriptions held over the node's own bus
#    subscription, publish round trips); Redis: PUBSUB NUMSUB summed over
#    every channel while the publishers run (one per channel: one node each)
#    and its output bytes per publish.
# 2. Publishing rate, Redis, NATS and RabbitMQ (each when installed) against
#    the in-process broker (measured first and last): one node each, 200
#    subscribers over 100 channels, 8 publishers through the HTTP API's
#    batch form (12 messages a request), offered far more than any takes;
#    the broker's CPU and RSS beside each. Then the same at a fixed rate
#    every broker keeps up with (FIXED per channel, default 100: 10,000
#    messages/s), for the node's CPU per published message: on two shared
#    cores the broker and the load generator take CPU from the node, so
#    the first ratio counts the broker's own work too; the second is the
#    node's alone, the bound of a node whose broker and publishers run on
#    other machines.
# 3. Redis and the in-process broker again, Redis on a core of its own and
#    the node and the generator on the other (part 3 below).
# Loopback only; every run stops by itself. Raw JSON and logs go to
# bench/results/<date>-<commit>-scaleout/.
#   bench/scripts/scaleout.sh                                     (about 8 minutes)
#   CONNS=1002 DURATION=3s PUBRATE=200 bench/scripts/scaleout.sh  (a smoke test, about 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/scripts/lib.sh
begin_run scaleout cmd/fanout cmd/fanout-bench
pids=()
cleanup() {
	stop "${pids[@]}" ${gen:+"$gen"} ${rpid:+"$rpid"} ${npid:+"$npid"}
	stop_rabbitmq
	rm -rf "$tmp"
}
trap cleanup EXIT
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
metric() { # metric ADMIN NAME: its value, 0 when absent
	curl -fs "http://$1/metrics" | awk -v m="$2" '$1==m {print $2; f=1} END {if (!f) print 0}'
}
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), ulimit -n $(ulimit -n)" | log

start_redis
key=bench-api-key-0123456

start_nodes() { # start_nodes N BROKER_ARGS...: nodes[i] host:port, admins[i]
	local n=$1 i
	shift
	nodes=() admins=() pids=()
	for i in $(seq 0 $((n - 1))); do
		nodes+=("127.0.0.1:$(free_port)") admins+=("127.0.0.1:$(free_port)")
		"$tmp/fanout" -log-level info -api-key $key -addr "${nodes[$i]}" -admin-addr "${admins[$i]}" "$@" \
			>"$out/node$i-$n.log" 2>&1 &
		pids+=($!)
	done
	for i in $(seq 0 $((n - 1))); do
		for _ in $(seq 300); do curl -fs "http://${admins[$i]}/readyz" >/dev/null && break; sleep 0.1; done
	done
}

# 1. Interest routing.
k=1002
start_nodes 6 -broker "redis://127.0.0.1:$rport/0"
urls=$(printf 'ws://%s/ws,' "${nodes[@]}")
base=() # each node's own subscriptions before any client: the node bus
for a in "${admins[@]}"; do base+=("$(metric "$a" fanout_broker_subscriptions)"); done
# Subscriber j takes channel j mod k on node j mod 6, so the first
# $used channels have one and node i holds those of them equal to i mod 6.
used=$((${CONNS:-6012} < k ? ${CONNS:-6012} : k))
before=() && for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
out0=$(redis-cli -p "$rport" info stats | awk -F: '/^total_net_output_bytes/{print $2+0}')
"$tmp/fanout-bench" -url "${urls%,}" -scenario broadcast -conns "${CONNS:-6012}" -rate 2000 -channels $k -publishers 10 \
	-msg-rate "${RATE:-3.5}" -size 64 -publish-url "http://${nodes[0]}/api/publish" -api-key $key -duration "${DURATION:-20s}" \
	-settle 3s -drain 3s -server-pid "$(IFS=,; echo "${pids[*]}")" -broker-pid "$rpid" -label "fanout x6 redis" \
	-json "$out/routing.json" >"$out/routing.txt" 2>&1 &
gen=$!
# Once every node holds its channels and node 0 has taken a publish, the
# publishing window is open: read the subscriptions and NUMSUB then.
held=() short=1
while kill -0 "$gen" 2>/dev/null; do
	held=() short=0
	for i in "${!admins[@]}"; do
		held+=("$(metric "${admins[$i]}" fanout_broker_subscriptions)")
		((held[i] - base[i] >= (used - i + 5) / 6)) || short=1
	done
	((short)) || [[ $(metric "${admins[0]}" fanout_publications_total) == 0 ]] || break
	short=1
	sleep 0.2
done
numsub=$(redis-cli -p "$rport" pubsub numsub $(seq -f "fanout:msg:c%g" 0 $((k - 1))) | awk 'NR%2==0 {s+=$1} END {print s}')
((!short)) || echo "warning: the publishing window closed before every node held its channels; NUMSUB and the subscriptions below are from the last look" | log
wait "$gen"
log <"$out/routing.txt"
out1=$(redis-cli -p "$rport" info stats | awk -F: '/^total_net_output_bytes/{print $2+0}')
hz=$(getconf CLK_TCK)
published=$(jq -r '.result.sent' "$out/routing.json")
echo "Redis: PUBSUB NUMSUB summed over the $k channels, mid-run: $numsub (one node each: $used); output bytes per publish $(((out1 - out0) / (published > 0 ? published : 1)))" | log
echo "| node | CPU s (whole run) | unwanted messages | broker subscriptions (mid-run, own bus ones beside) | publish round trips | messages per round trip |" | log
echo "|---|---|---|---|---|---|" | log
for i in "${!pids[@]}"; do
	a=${admins[$i]}
	trips=$(metric "$a" fanout_broker_publish_round_trips_total) msgs=$(metric "$a" fanout_broker_published_messages_total)
	echo "| $i | $(awk -v t=$(($(cpu_ticks "${pids[$i]}") - before[i])) -v hz="$hz" 'BEGIN {printf "%.2f", t/hz}') |" \
		"$(metric "$a" fanout_broker_unwanted_messages_total) | $((held[i] - base[i])) (+${base[$i]}) | $trips |" \
		"$(awk -v m="$msgs" -v t="$trips" 'BEGIN {printf "%.1f", (t > 0 ? m/t : 0)}') |" | log
done
stop "${pids[@]}"
pids=()

# 2. Publishing rate: each broker that is installed against the in-process
# one, which runs first and last.
brokers="memory redis"
if command -v nats-server >/dev/null; then
	nport=$(free_port)
	nats-server -a 127.0.0.1 -p "$nport" -js -sd "$tmp/nats" >"$out/nats-server.log" 2>&1 &
	npid=$!
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$nport") 2>/dev/null && break; sleep 0.1; done
	echo "nats-server $(nats-server --version | cut -d' ' -f2) pid $npid, -js" | log
	brokers+=" nats"
fi
if command -v rabbitmq-server >/dev/null; then
	start_rabbitmq
	brokers+=" rabbitmq"
fi
brokers+=" memory-2"
# fresh_node starts one node on broker args, Redis emptied first;
# publish_run RATE LABEL JSON [FLAG...] runs the publishing load on it
# (bpid the broker's pid), messages a channel per second RATE.
fresh_node() {
	redis-cli -p "$rport" flushall >/dev/null
	start_nodes 1 "${args[@]}"
}
publish_run() {
	local rate=$1 label=$2 json=$3
	shift 3
	"$tmp/fanout-bench" -url "ws://${nodes[0]}/ws" -scenario broadcast -conns 200 -channels 100 -publishers 8 -batch 12 \
		-msg-rate "$rate" -size 64 -publish-url "http://${nodes[0]}/api/publish" -api-key $key \
		-duration "${DURATION:-20s}" -settle 2s -drain 3s -server-pid "${pids[0]}" ${bpid:+-broker-pid "$bpid"} \
		-label "$label" -json "$json" "$@" | log
}
for broker in $brokers; do
	case $broker in
	redis) args=(-broker "redis://127.0.0.1:$rport/0") bpid=$rpid ;;
	nats) args=(-broker "nats://127.0.0.1:$nport") bpid=$npid ;;
	rabbitmq) args=(-broker "rabbitmq-stream://guest:guest@127.0.0.1:$sport/?stream=scaleout") bpid=$beam ;;
	memory*) args=() bpid= ;;
	esac
	fresh_node
	publish_run "${PUBRATE:-2000}" "fanout $broker" "$out/publish-$broker.json" -metrics-url "http://${admins[0]}/metrics"
	jq -r --arg b "$broker" '.result | "\($b): published/s \(.published_per_s), API p50 \(.api_p50_ms) ms p99 \(.api_p99_ms) ms, missing \(.missing), lost \(.lost), server CPU \(.server_cpu_cores) cores, broker CPU \(.broker_cpu_cores // 0) cores, broker RSS \((.broker_rss_end_bytes // 0) / 1048576 | floor) MiB, machine \(.machine_cpu_cores) cores"' \
		"$out/publish-$broker.json" | log
	echo "$broker: publish round trips $(metric "${admins[0]}" fanout_broker_publish_round_trips_total), messages $(metric "${admins[0]}" fanout_broker_published_messages_total)" | log
	stop "${pids[@]}"
	fresh_node
	publish_run "${FIXED:-100}" "fanout $broker fixed" "$out/fixed-$broker.json"
	jq -r --arg b "$broker" '.result | "\($b) at a fixed rate: published/s \(.published_per_s), missing \(.missing), node CPU per message \(.server_cpu_cores / .published_per_s * 1e6 * 10 | floor / 10) us, broker CPU per message \((.broker_cpu_cores // 0) / .published_per_s * 1e6 * 10 | floor / 10) us"' \
		"$out/fixed-$broker.json" | log
	stop "${pids[@]}"
	pids=()
	case $broker in # an idle broker still takes CPU: gone before the next run
	nats) stop "$npid" && npid= ;;
	rabbitmq) stop_rabbitmq ;;
	esac
done
m=$(jq -s 'map(.result.published_per_s) | add / length' "$out/publish-memory.json" "$out/publish-memory-2.json")
echo "in-process broker: $m published/s (mean of the first and last run)" | log
for broker in $brokers; do
	[[ $broker != memory* ]] || continue
	r=$(jq -r '.result.published_per_s' "$out/publish-$broker.json")
	echo "$broker publishes at $(awk -v r="$r" -v m="$m" 'BEGIN {printf "%.2f", (m > 0 ? r/m : 0)}')x the in-process broker's rate" | log
done
cost='.result.server_cpu_cores / .result.published_per_s * 1e6'
mc=$(jq -s "map($cost) | add / length" "$out/fixed-memory.json" "$out/fixed-memory-2.json")
for broker in $brokers; do
	[[ $broker != memory* ]] || continue
	c=$(jq "$cost" "$out/fixed-$broker.json")
	echo "$broker: the node's CPU per message at the fixed rate is $(awk -v c="$c" -v m="$mc" 'BEGIN {printf "%.1f us against %.1f us in-process: it publishes %.2fx", c, m, (c > 0 ? m/c : 0)}') the in-process broker's messages per CPU second" | log
done

# 3. Redis on a core of its own, as on a machine of its own: Redis pinned
# to the last CPU, the node and the load generator to CPU 0, against the
# in-process broker with the same node and generator on CPU 0 (the last
# idle); the closed loop of part 2, alternating, PINNED_ROUNDS rounds.
last=$(($(nproc) - 1))
taskset -a -p -c "$last" "$rpid" >/dev/null
for round in $(seq "${PINNED_ROUNDS:-2}"); do
	for broker in memory redis; do
		args=() bpid=
		[[ $broker == memory ]] || args=(-broker "redis://127.0.0.1:$rport/0") bpid=$rpid
		fresh_node
		publish_run "${PUBRATE:-2000}" "fanout $broker, Redis on CPU $last" "$out/pinned-$broker-$round.json" -pin-server 0 -pin-client 0
		jq -r --arg b "$broker" --arg r "$round" '.result | "round \($r), \($b), node and generator on CPU 0: published/s \(.published_per_s), API p50 \(.api_p50_ms) ms, missing \(.missing), node CPU \(.server_cpu_cores) cores, broker CPU \(.broker_cpu_cores // 0) cores"' \
			"$out/pinned-$broker-$round.json" | log
		stop "${pids[@]}"
		pids=()
	done
	r=$(jq -s '.[1].result.published_per_s / .[0].result.published_per_s' "$out/pinned-memory-$round.json" "$out/pinned-redis-$round.json")
	echo "round $round: Redis on its own core publishes at $(printf %.2f "$r")x the in-process broker's rate" | log
done
taskset -a -p -c "0-$last" "$rpid" >/dev/null
echo "raw results in $out" | log
