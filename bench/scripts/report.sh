#!/usr/bin/env bash
# Reproduces the load-generator figures of BENCHMARKS.md: the memory curve,
# broadcast against the gorilla hub and the Node ws server, the isolation
# scenario and 100,000 connections over several Fanout processes. Loopback
# only; every run stops by itself. Raw JSON goes to bench/results/<date>-<commit>/.
#   bench/scripts/report.sh [memory|broadcast|slow|tls|100k|channels|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
[[ $what == channels ]] && export SKIP_NODE=1 # only Fanout runs there
eval "$(PORT=9400 bench/peers/start.sh)"
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)"
mkdir -p "$out"
url=ws://127.0.0.1:9400/ws
log() { tee -a "$out/$1.md"; }
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
	wait_quiet() { # at most 180 s for under 0.15 busy cores over 3 s
		local start=$SECONDS a b
		while ((SECONDS - start < 180)); do
			a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 3
			b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
			((b - a < 45)) && return
		done
	}
	FANOUT_API="$FANOUT -api-key bench"
	api="-publish-url http://127.0.0.1:9400/api/publish -api-key bench"
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
echo "raw results in $out"
