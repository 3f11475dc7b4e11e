#!/usr/bin/env bash
# Reproduces the core-engine figures of BENCHMARKS.md: idle memory per
# connection and broadcast latency, Fanout against the gorilla/websocket hub,
# alternating servers over ROUNDS rounds on this machine. Every run is
# bounded in time and targets 127.0.0.1 only.
#
#   bench/scripts/compare.sh            # all scenarios, 2 rounds
#   ROUNDS=1 bench/scripts/compare.sh idle
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-2}
only=${1:-all}
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)"
mkdir -p "$out" /tmp/fanout-bench-bin
bin=/tmp/fanout-bench-bin
go build -o $bin/fanout ./cmd/fanout
go build -o $bin/fanout-bench ./cmd/fanout-bench
go build -C bench/peers -o $bin/gorilla ./gorilla

start() { # name -> sets pid, port
	case $1 in
	fanout) port=9300; $bin/fanout -addr 127.0.0.1:$port -log-level warn >"$out/$1.log" 2>&1 & pid=$! ;;
	gorilla) port=9301; $bin/gorilla -addr 127.0.0.1:$port >"$out/$1.log" 2>&1 & pid=$! ;;
	esac
	for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
	echo "server $1 did not start" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

run() { # scenario conns rate label
	local scenario=$1 conns=$2 rate=$3 name=$4 i=$5
	start "$name"
	$bin/fanout-bench -url ws://127.0.0.1:$port/ws -scenario "$scenario" -conns "$conns" -msg-rate "$rate" \
		-rate 5000 -duration 10s -settle 3s -server-pid "$pid" -label "$name" \
		-json "$out/$scenario-$conns-$rate-$name-$i.json" | tee -a "$out/$scenario.md"
	stop
}

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), ulimit -n $(ulimit -n)" | tee "$out/README.md"
for i in $(seq "$rounds"); do
	for name in fanout gorilla; do
		[[ $only == all || $only == idle ]] && run idle 19000 1 $name "$i"
		[[ $only == all || $only == broadcast ]] && run broadcast 19000 5 $name "$i"
		[[ $only == all || $only == broadcast ]] && run broadcast 2000 200 $name "$i"
	done
done
echo "raw results in $out"
