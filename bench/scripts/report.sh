#!/usr/bin/env bash
# Reproduces the load-generator figures of BENCHMARKS.md: the memory curve,
# broadcast against the gorilla hub and the Node ws server, the isolation
# scenario and 100,000 connections over several Fanout processes. Loopback
# only; every run stops by itself. Raw JSON goes to bench/results/<date>-<commit>/.
#   bench/scripts/report.sh [memory|broadcast|slow|tls|100k|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
eval "$(PORT=9400 bench/peers/start.sh)"
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)"
mkdir -p "$out"
url=ws://127.0.0.1:9400/ws
log() { tee -a "$out/$1.md"; }
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), node $(node --version), ulimit -n $(ulimit -n)" | tee "$out/README.md"

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
