#!/usr/bin/env bash
# Reproduces the load-generator figures of BENCHMARKS.md: the memory curve,
# broadcast against the gorilla hub and the Node ws server, the isolation
# scenario and 100,000 connections over several Fanout processes. Loopback
# only; every run stops by itself. Raw JSON goes to bench/results/<date>-<commit>/.
# The broker target: 100,000 connections over six processes sharing one port
# (SO_REUSEPORT) joined by a Redis it starts, then one node with and without
# Redis at 19,000 (BENCHMARKS.md, issue 6).
# The peers target: issue 9's pinned table against uWebSockets.js, nbio,
# gorilla and Node ws (bench/scripts/peers.sh, which takes the rest of the
# arguments; not part of all).
#   bench/scripts/report.sh [memory|broadcast|slow|tls|100k|channels|broker|all]
#   bench/scripts/report.sh peers [ROUND [PART...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
[[ $what != peers ]] || exec bench/scripts/peers.sh "${@:2}"
[[ $what == channels || $what == broker ]] && export SKIP_NODE=1 # only Fanout runs there
eval "$(PORT=9400 bench/peers/start.sh)"
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)"
mkdir -p "$out"
url=ws://127.0.0.1:9400/ws
log() { tee -a "$out/$1.md"; }
wait_quiet() { # at most ${1:-180} s for under 0.15 busy cores over 3 s
	local start=$SECONDS a b
	while ((SECONDS - start < ${1:-180})); do
		a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 3
		b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
		((b - a < 45)) && return
	done
	echo "machine still busy after ${1:-180} s ($(((b - a) / 3))% of one core); measuring anyway" >&2
}
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), node $(node --version 2>/dev/null || echo none), ulimit -n $(ulimit -n)" | tee "$out/README.md"

if [[ $what == all || $what == memory ]]; then
	for n in 1000 2000 5000 10000 15000 19000; do
		for s in fanout:"$FANOUT" gorilla:"$GORILLA" node:"$NODEWS"; do
			$BENCH -url $url -scenario idle -conns $n -duration 3s -settle 3s -server-cmd "${s#*:}" \
				-label "${s%%:*}" -json "$out/idle-$n-${s%%:*}.json" | log memory
		done
	done
fi
if [[ $what == all || $what == broadcast ]]; then
	for spec in 1000:5 5000:5 19000:5 2000:200; do
		n=${spec%%:*} rate=${spec##*:}
		for vs in gorilla:"$GORILLA" node:"$NODEWS"; do
			$BENCH -url $url -scenario broadcast -conns $n -msg-rate $rate -duration 10s -settle 3s \
				-server-cmd "$FANOUT" -vs-cmd "${vs#*:}" -rounds 2 -label fanout \
				-json "$out/broadcast-$n-$rate-vs-${vs%%:*}.json" | log broadcast
		done
	done
fi
if [[ $what == all || $what == slow ]]; then
	$BENCH -url $url -scenario slow -conns 18000 -msg-rate 5 -slow-frac 0.01 -stalled 1000 -duration 10s -settle 3s \
		-server-cmd "$FANOUT" -label fanout -json "$out/slow-18000-fanout.json" | log slow
fi
if [[ $what == all || $what == tls ]]; then
	# wss against ws on the same binary: memory per idle connection and
	# handshakes per second (TLS 1.3, ECDSA P-256 certificate made here).
	tmp=$(mktemp -d)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
	FANOUT_TLS="$FANOUT -tls-cert $tmp/cert.pem -tls-key $tmp/key.pem"
	for n in 1000 10000 19000; do
		$BENCH -url $url -scenario idle -conns $n -duration 3s -settle 3s -server-cmd "$FANOUT" -label ws -json "$out/idle-$n-ws.json" | log tls
		$BENCH -url ${url/ws:/wss:} -ca-file "$tmp/cert.pem" -scenario idle -conns $n -duration 3s -settle 3s -server-cmd "$FANOUT_TLS" -label wss -json "$out/idle-$n-wss.json" | log tls
	done
	$BENCH -url $url -scenario churn -conns 64 -duration 10s -settle 0s -server-cmd "$FANOUT" -label ws -json "$out/churn-ws.json" | log tls
	$BENCH -url ${url/ws:/wss:} -ca-file "$tmp/cert.pem" -scenario churn -conns 64 -duration 10s -settle 0s -server-cmd "$FANOUT_TLS" -label wss -json "$out/churn-wss.json" | log tls
fi
if [[ $what == all || $what == channels ]]; then
	# 19,000 subscribers spread over 1, 10 and 1,000 channels; -msg-rate is
	# per channel, so every run delivers msg-rate x 19,000 messages/s
	# whatever the number of channels. Publishers use the HTTP API or
	# {"op":"publish"} over a WebSocket; the plain /ws room with a raw binary
	# publisher is the baseline. Fresh server per run; configurations
	# alternate; each run first waits for the machine to be quiet, since
	# other work on a shared box skews latency (MachineCPU in the JSON).
	FANOUT_API="$FANOUT -api-key bench-api-key-0123456"
	api="-publish-url http://127.0.0.1:9400/api/publish -api-key bench-api-key-0123456"
	configs=(
		"room|"
		"k1-ws|-channels 1 -publishers 1"
		"k1-http|-channels 1 -publishers 1 $api"
		"k10-ws|-channels 10 -publishers 10"
		"k10-http|-channels 10 -publishers 10 $api"
		"k1000-ws|-channels 1000 -publishers 16"
		"k1000-http|-channels 1000 -publishers 16 $api"
		"k1000-http-batch10|-channels 1000 -publishers 16 -batch 10 $api"
	)
	# rate (msg/s per channel) : duration : rounds
	for series in 2:20s:3 5:10s:2; do
		IFS=: read -r rate dur rounds <<<"$series"
		for round in $(seq 1 "$rounds"); do
			for c in "${configs[@]}"; do
				name=${c%%|*} flags=${c#*|}
				wait_quiet
				# shellcheck disable=SC2086
				$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate "$rate" -size 64 $flags -duration "$dur" -settle 3s \
					-server-cmd "$FANOUT_API" -label "$name" -json "$out/channels-$rate-$name-$round.json" | log channels
			done
		done
	done
fi
if [[ $what == all || $what == 100k ]]; then
	# Six Fanout processes (each below the 20,000 open-files cap), one port each;
	# the generator spreads 100,000 connections over them and starts its own
	# worker processes. Without a broker each process is its own room: one
	# publisher per process.
	pids=() urls=()
	for i in 0 1 2 3 4 5; do
		p=$((9410 + i))
		${FANOUT/9400/$p} & pids+=($!)
		urls+=("ws://127.0.0.1:$p/ws")
	done
	trap 'kill ${pids[*]} 2>/dev/null || true' EXIT
	sleep 1
	list=$(IFS=,; echo "${urls[*]}") plist=$(IFS=,; echo "${pids[*]}")
	$BENCH -url "$list" -scenario idle -conns 100000 -rate 5000 -duration 5s -settle 5s -server-pid "$plist" \
		-label "fanout x6" -json "$out/idle-100000.json" | log 100k
	$BENCH -url "$list" -scenario broadcast -conns 100000 -rate 5000 -msg-rate 1 -duration 10s -settle 5s -drain 5s \
		-server-pid "$plist" -label "fanout x6" -json "$out/broadcast-100000.json" | log 100k
	kill "${pids[@]}"
fi
if [[ $what == all || $what == broker ]]; then
	# Redis broker (issue 6). A redis-server without persistence on a free
	# loopback port; six fanout processes on ONE address with -reuseport and
	# -broker (the kernel spreads accepts by hash: ~16,700 each, under the
	# per-process open-files ceiling); every node's /readyz must answer 200
	# (broker subscription live) before a run. fanout-bench samples Redis CPU
	# over the measured window (-broker-pid: BrokerCPU in the JSON); the
	# script also records Redis CPU over the whole run (ramp included) and
	# its command statistics in <run>-redis.txt, each node's connection count
	# during the run in <run>-spread.txt and its fanout_* metrics after it.
	fbin=${FANOUT%% *} key=bench-api-key-0123456 port=9460
	big=${BROKER_CONNS:-100000} single=${SINGLE_CONNS:-19000} # smaller for a smoke test
	# channels:publishers:msg/s per channel at 100k; parts to run
	specs=${BROKER_SPECS:-1:1:1 10:10:1 1:1:0.5} parts=${BROKER_PARTS:-idle big single}
	started=() # fanout pids; the redis-server is $rpid
	stop_pids() { # SIGTERM, up to 10 s each, then SIGKILL
		local p
		(($#)) || return 0
		kill "$@" 2>/dev/null || true
		for p in "$@"; do
			for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$p" 2>/dev/null || true
		done
	}
	stop_started() { stop_pids "${started[@]}" ${rpid:+"$rpid"}; started=(); rpid=; }
	stop_nodes() { stop_pids "${started[@]}"; started=(); }
	trap stop_started EXIT
	trap 'stop_started; exit 1' INT TERM
	free_port() {
		local p
		for p in $(shuf -i 20000-29999 -n 100); do
			ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
		done
		return 1
	}
	ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime+stime (comm has no spaces)
	rport=$(free_port)
	redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --logfile "$PWD/$out/redis.log" &
	rpid=$!
	for _ in $(seq 100); do [[ $(redis-cli -p "$rport" ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done
	broker=redis://127.0.0.1:$rport/0
	echo "redis-server pid $rpid on 127.0.0.1:$rport ($(redis-server --version | cut -d' ' -f3)), --save '' --appendonly no" | log broker
	# start_node NAME ADMIN-PORT FLAGS...: one fanout with its log under $out;
	# sets $node_pid.
	start_node() {
		local name=$1 admin=$2
		shift 2
		"$fbin" -log-level info -api-key $key -admin-addr "127.0.0.1:$admin" "$@" >"$out/$name.log" 2>&1 &
		node_pid=$! started+=("$node_pid")
	}
	wait_ready() { # every admin port's /readyz answers 200, within 30 s
		local a
		for a in "$@"; do
			for _ in $(seq 300); do curl -fs "http://127.0.0.1:$a/readyz" >/dev/null && continue 2; sleep 0.1; done
			echo "node with admin port $a not ready after 30 s" >&2
			return 1
		done
	}
	open_conns() { curl -fs "http://127.0.0.1:$1/metrics" | awk '/^fanout_connections_open /{print $2}'; }
	# measure NAME ADMIN-PORTS -- fanout-bench flags: runs the generator
	# with Redis sampled, the spread sampler beside it, metrics after.
	measure() {
		local name=$1 admins=($2) t0 r0 sp
		shift 3
		wait_quiet 60
		redis-cli -p "$rport" config resetstat >/dev/null
		(while sleep 2; do
			local line="" total=0 n a
			for a in "${admins[@]}"; do n=$(open_conns "$a" || echo 0); line+=" $n"; total=$((total + ${n%.*})); done
			echo "$(date +%s)$line total $total"
		done) >"$out/$name-spread.txt" &
		sp=$!
		t0=$(date +%s.%N) r0=$(ticks "$rpid")
		$BENCH "$@" -broker-pid "$rpid" -json "$out/$name.json" | log broker
		local r1 t1
		r1=$(ticks "$rpid") t1=$(date +%s.%N)
		kill "$sp"; wait "$sp" 2>/dev/null || true
		{
			echo "redis CPU over the whole fanout-bench run (ramp, settle, measure, drain): $((r1 - r0)) ticks in $(echo "$t1 - $t0" | bc) s = $(echo "scale=4; ($r1 - $r0) / 100 / ($t1 - $t0)" | bc) cores"
			echo "redis CPU over the measured window (fanout-bench -broker-pid): $(jq .result.broker_cpu_cores "$out/$name.json") cores"
			redis-cli -p "$rport" info commandstats
			redis-cli -p "$rport" info memory | grep -E '^used_memory(_human)?:'
		} | tr -d '\r' >"$out/$name-redis.txt"
		echo "$name: $(head -1 "$out/$name-redis.txt")" | log broker
		awk -v n="$name" '$NF > max {max = $NF; l = $0} END {split(l, f, " "); printf "%s: connections per node at the peak:", n
			for (i = 2; i <= length(f) - 2; i++) printf " %s", f[i]; printf " (total %s)\n", max}' "$out/$name-spread.txt" | log broker
		local i=0 a
		for a in "${admins[@]}"; do
			curl -fs "http://127.0.0.1:$a/metrics" | grep '^fanout_' >"$out/$name-metrics-$i.txt" || true
			i=$((i + 1))
		done
	}

	# 100,000 connections: six nodes on one port.
	if [[ $parts == *idle* || $parts == *big* ]]; then
		addr=127.0.0.1:$port url=ws://$addr/ws api="-publish-url http://$addr/api/publish -api-key $key"
		pids=() admins=()
		for i in 0 1 2 3 4 5; do
			start_node "node$i" $((port + 10 + i)) -addr "$addr" -reuseport -broker "$broker"
			pids+=("$node_pid") admins+=($((port + 10 + i)))
		done
		wait_ready "${admins[@]}"
		grep -h "ceiling" "$out"/node?.log | log broker
		plist=$(IFS=,; echo "${pids[*]}")
		[[ $parts != *idle* ]] || measure idle-$big "${admins[*]}" -- -url "$url" -scenario idle -conns $big -rate 5000 -duration 5s -settle 5s \
			-server-pid "$plist" -label "fanout x6 reuseport redis"
		for spec in $specs; do
			[[ $parts == *big* ]] || break
			IFS=: read -r k p r <<<"$spec"
			name=broadcast-$big-k$k # at 1 msg/s per channel; else -r<msg/s>
			[[ $r == 1 ]] || name+=-r$r
			# shellcheck disable=SC2086
			measure "$name" "${admins[*]}" -- -url "$url" -scenario broadcast -conns $big -rate 5000 -channels "$k" \
				-publishers "$p" -msg-rate "$r" -size 64 $api -duration 20s -settle 5s -drain 5s \
				-server-pid "$plist" -label "fanout x6 reuseport redis"
		done
		stop_nodes
	fi

	# 19,000 connections on one node: in-process channels (a) against the
	# same node with -broker (b), alternating, same publish rate.
	addr=127.0.0.1:$((port + 1)) url=ws://127.0.0.1:$((port + 1))/ws api="-publish-url http://127.0.0.1:$((port + 1))/api/publish -api-key $key"
	for rate in 1 5; do
		[[ $parts == *single* ]] || break
		for round in 1 2; do
			for b in local redis; do
				flags=()
				[[ $b == redis ]] && flags=(-broker "$broker") && redis-cli -p "$rport" flushall >/dev/null
				start_node "single-$rate-$b-$round" $((port + 20)) -addr "$addr" "${flags[@]}"
				wait_ready $((port + 20))
				# shellcheck disable=SC2086
				measure "single-$single-$rate-$b-$round" $((port + 20)) -- -url "$url" -scenario broadcast -conns $single -channels 1 -publishers 1 \
					-msg-rate "$rate" -size 64 $api -duration 10s -settle 3s -server-pid "$node_pid" -label "fanout 1 node $b"
				stop_nodes
			done
		done
	done
	stop_started
fi
echo "raw results in $out"
