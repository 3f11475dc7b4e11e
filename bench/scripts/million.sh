#!/usr/bin/env bash
# A million connections on one machine (issue 23). The open-files limit
# holds a process to ~19,900 sockets, so every step runs ceil(N / PER_NODE)
# fanout nodes, each on its own loopback port, joined by one redis-server,
# and fanout-bench splits its connections over worker processes of its own
# (-per-process). One channel spans every node (-channels 1 -joined): each
# message is published once through node 0's HTTP API and delivered to all
# N subscribers through the broker; every delivery is counted and checked
# for order. Per step, with fresh nodes each time:
#   ramp N connections from 200 source addresses (127.0.0.2..201, so no
#   address runs out of ports) at RATE/s, settle, broadcast MSG_RATE
#   messages/s for DURATION (longer than the nodes' -ping-interval PING, so
#   their timer sweeps ping everyone once), drain;
#   then from every node's /metrics: the timer sweep and GC pause
#   histograms (merged over the nodes: p99 as the bucket bound it falls
#   in), and /proc/net/sockstat, Slab and MemAvailable every 5 s.
# Kernel settings: tcp_mem is raised for the run where the kernel lets us
# (the old value comes back on exit); everything else this needs is the
# default here. What was set, and what could not be, goes to the log.
# Every process started is stopped on exit; fanout-bench's -timeout bounds
# each step. Raw JSON, samples and logs go to
# bench/results/<date>-<commit>-million/; a table row per step goes to its
# README.md, and bench/plot draws memory.png from the step files.
#   bench/scripts/million.sh                                  (about 40 minutes)
#   STEPS="20000 40000" DURATION=10s bench/scripts/million.sh (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/../.."
# The kernel's TCP established hash table (one per host, sized at boot:
# 262,144 buckets here) holds both ends of every loopback connection: 2M
# sockets at 1M, eight per bucket, and every packet walks one. A network
# namespace created after net.ipv4.tcp_child_ehash_entries is set gets a
# table of its own of that size, so where root may (EHASH=0: never) the
# run re-enters itself in a fresh namespace with loopback up and a table of
# EHASH buckets, and puts the setting back afterwards.
ehash=${EHASH:-2097152}
# A socket with a queued frame holds at least a page of tcp_mem: a
# broadcast to 1M queues one on a million sockets at once (4 GiB), over the
# default's pressure threshold on a 24 GiB machine.
tcp_mem="1048576 1572864 2097152"
if [[ ${MILLION_NETNS:-} != inner && $ehash != 0 ]] &&
	old_ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null) &&
	sysctl -qw net.ipv4.tcp_child_ehash_entries="$ehash" 2>/dev/null; then
	# tcp_mem is the host's, not the namespace's: set it here.
	old_mem=$(sysctl -n net.ipv4.tcp_mem | tr '\t' ' ')
	sysctl -qw net.ipv4.tcp_mem="$tcp_mem" || true
	status=0
	MILLION_NETNS=inner MILLION_TCP_MEM_WAS=$old_mem unshare -n sh -c 'ip link set lo up && exec "$0"' "$0" || status=$?
	sysctl -qw net.ipv4.tcp_child_ehash_entries="$old_ehash" net.ipv4.tcp_mem="$old_mem"
	exit $status
fi
steps=${STEPS:-100000 250000 500000 1000000}
# GOMAXPROCS=1 for every node and generator process: ~110 Go processes
# share 2 cores, and a second P each only spins.
procs=${PROCS:-1}
per_node=${PER_NODE:-18000} rate=${RATE:-5000} msg_rate=${MSG_RATE:-0.1} duration=${DURATION:-130s}
# Idle connections cost a ping and its pong every -ping-interval each, on
# both ends: at the default 30 s that is 33,000 of each a second at 1M,
# about all of this machine's two cores (the servers alone used 0.58 cores
# at 500k), and the ramp crawls. PING sets the nodes' interval (IDLE their
# idle timeout); 120 s is uWS.js's idle timeout.
ping=${PING:-120s} idle=${IDLE:-300s}
. bench/scripts/lib.sh
begin_run million cmd/fanout cmd/fanout-bench
pids=() restore=()
cleanup() {
	stop "${pids[@]}" ${sampler:+"$sampler"} ${rpid:+"$rpid"}
	local kv
	for kv in "${restore[@]}"; do sysctl -qw "$kv" || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(go version | cut -d' ' -f3), ulimit -n $(ulimit -n) (hard $(ulimit -Hn))" | log
echo "steps: $steps; $per_node connections per node, ramp $rate/s, $msg_rate msg/s for $duration, GOMAXPROCS=$procs in every process, nodes' -ping-interval $ping -idle-timeout $idle" | log

# tune KEY VALUE: set a kernel setting for the run and restore it on exit,
# or say why not.
tune() {
	local old
	old=$(sysctl -n "$1" | tr '\t' ' ')
	if [[ $old == "$2" ]]; then
		echo "kernel: $1 = $old (already)" | log
	elif sysctl -qw "$1=$2" 2>/dev/null; then
		restore+=("$1=$old")
		echo "kernel: $1 = $2 for the run (was $old)" | log
	else
		echo "kernel: $1 = $old (could not set $2 here)" | log
	fi
}
if [[ ${MILLION_NETNS:-} == inner ]]; then
	echo "kernel: net.ipv4.tcp_mem = $tcp_mem for the run (was $MILLION_TCP_MEM_WAS; the host's, set before entering the namespace)" | log
	echo "kernel: a network namespace of its own (unshare -n), TCP established hash $(sysctl -n net.ipv4.tcp_ehash_entries) buckets (net.ipv4.tcp_child_ehash_entries=$ehash)" | log
else
	tune net.ipv4.tcp_mem "$tcp_mem"
	echo "kernel: the host's network namespace, TCP established hash $(sysctl -n net.ipv4.tcp_ehash_entries | tr -d -) buckets (a table of its own needs root and unshare)" | log
fi
for k in fs.nr_open fs.file-max net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_port_range net.ipv4.tcp_max_tw_buckets; do
	echo "kernel: $k = $(sysctl -n "$k" | tr '\t' ' ')" | log
done

start_redis
key=bench-api-key-0123456

start_nodes() { # start_nodes N: nodes[i] host:port, admins[i], pids[i]
	local i
	nodes=() admins=() pids=()
	for i in $(seq 0 $(($1 - 1))); do
		nodes+=("127.0.0.1:$(free_port)") admins+=("127.0.0.1:$(free_port)")
		GOMAXPROCS=$procs "$tmp/fanout" -log-level warn -api-key $key -addr "${nodes[$i]}" -admin-addr "${admins[$i]}" \
			-ping-interval "$ping" -idle-timeout "$idle" -broker "redis://127.0.0.1:$rport/0" >"$out/node$i-$1.log" 2>&1 &
		pids+=($!)
	done
	for a in "${admins[@]}"; do
		for _ in $(seq 300); do curl -fs "http://$a/readyz" >/dev/null && continue 2; sleep 0.1; done
		echo "node $a not ready after 30 s" >&2
		return 1
	done
}

# sample FILE: every 5 s a line of the kernel's socket and slab memory.
sample() {
	while :; do
		printf '%s %s slab_kB %s available_kB %s\n' "$(date +%s)" \
			"$(awk '/^TCP:/ {$1=""; print}' /proc/net/sockstat)" \
			"$(awk '/^Slab:/ {print $2}' /proc/meminfo)" "$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
		sleep 5
	done >"$1"
}

# hist NAME FILES...: the histogram merged over the nodes: its p99 as the
# upper bound of the bucket it falls in (Prometheus buckets are cumulative),
# its mean and its count.
hist() {
	local name=$1
	shift
	awk -v m="${name}_bucket" -v c="${name}_count" -v s="${name}_sum" '
		index($1, m "{") == 1 { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5); b[le] += $2; if (!(le in seen)) { seen[le] = 1; order[n++] = le } }
		$1 == c { total += $2 }
		$1 == s { sum += $2 }
		END {
			p = "-"
			for (i = 0; i < n; i++) if (b[order[i]] >= 0.99 * total) { p = order[i] == "+Inf" ? "inf" : sprintf("%.3g", order[i] * 1000); break }
			printf "<= %s ms, mean %.3g ms (%d)", p, (total ? sum / total * 1000 : 0), total
		}' "$@"
}

echo | log
echo "| connections | nodes | ramp | server RSS/conn | generator RSS/conn | kernel slab/conn | machine/conn | TCP mem (pages, end) | deliveries | missing / lost / reordered | p50 | p99 | max | timer sweep p99, mean (sweeps) | GC pause p99, mean (pauses) | Redis CPU (cores) | servers' CPU (cores) |" | log
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" | log
for n in $steps; do
	k=$(((n + per_node - 1) / per_node))
	start_nodes "$k"
	urls=$(printf 'ws://%s/ws,' "${nodes[@]}")
	sample "$out/sockstat-$n.txt" &
	sampler=$!
	GOMAXPROCS=$procs "$tmp/fanout-bench" -url "${urls%,}" -joined -scenario broadcast -channels 1 -publishers 1 \
		-publish-url "http://${nodes[0]}/api/publish" -api-key $key -msg-rate "$msg_rate" -size 64 \
		-conns "$n" -rate "$rate" -source-ips 200 -duration "$duration" -settle 10s -drain "${DRAIN:-30s}" \
		-timeout 30m -server-pid "$(IFS=,; echo "${pids[*]}")" -broker-pid "$rpid" -quiet \
		-label "fanout x$k redis" -json "$out/step-$n.json" >"$out/step-$n.txt" 2>&1 || echo "step $n: fanout-bench failed" | log
	stop "$sampler"
	sampler=
	for i in "${!admins[@]}"; do curl -fs "http://${admins[$i]}/metrics" >"$out/metrics-$n-node$i.txt" || true; done
	sweep=$(hist fanout_timer_sweep_seconds "$out"/metrics-"$n"-node*.txt)
	gc=$(hist go_sched_pauses_total_gc_seconds "$out"/metrics-"$n"-node*.txt)
	tcpmem=$(tail -1 "$out/sockstat-$n.txt" | awk '{for (i = 1; i < NF; i++) if ($i == "mem") print $(i+1)}')
	if [[ -s $out/step-$n.json ]]; then
		jq -r --arg k "$k" --arg sweep "$sweep" --arg gc "$gc" --arg tcp "$tcpmem" '.result |
			def b: if . == null then "-" else (. | round | tostring) + " B" end;
			def ms: (. | round | tostring) + " ms";
			"| \(.connected) | \($k) | \(.ramp_s * 10 | round / 10) s | \(.rss_per_conn_bytes | b) | \(.generator_rss_per_conn_bytes | b) | \(.kernel_slab_per_conn_bytes | b) | \(.machine_per_conn_bytes | b) | \($tcp) | \(.deliveries) of \(.sent) x \(.connected) | \(.missing) / \(.lost) / \(.reordered) | \(.p50_ms | ms) | \(.p99_ms | ms) | \(.max_ms | ms) | \($sweep) | \($gc) | \(.broker_cpu_cores * 100 | round / 100) | \(.server_cpu_cores * 100 | round / 100) |"' \
			"$out/step-$n.json" | log
	fi
	stop "${pids[@]}"
	pids=()
	# The next step starts from a quiet kernel: wait until the sockets of
	# this one are gone (TIME_WAIT included, up to a minute).
	for _ in $(seq 60); do (($(awk '/^TCP:/ {print $3 + $7}' /proc/net/sockstat) < 5000)) && break; sleep 1; done
done
echo | log
echo "Per-step outputs: step-N.txt (fanout-bench's table), step-N.json, sockstat-N.txt (TCP: inuse orphan tw alloc mem, every 5 s), metrics-N-nodeI.txt" | log
# bench/plot draws each step's memory over its ramp: memory-N.png, the
# last (largest) step's the whole curve.
go build -C bench/plot -o "$tmp/plot" . && "$tmp/plot" -o "$out" "$out"/step-*.json >/dev/null || echo "bench/plot failed" | log
echo "Charts: go build -C bench/plot -o /tmp/fanout-plot . && /tmp/fanout-plot -o $out $out/step-*.json" | log
echo "raw results in $out" | log
