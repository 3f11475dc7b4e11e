#!/usr/bin/env bash
# Reproduces the permessage-deflate figures of BENCHMARKS.md (issue 12):
# 19,000 subscribers that offer permessage-deflate as browsers do, a 1 KiB
# order-book JSON message (16-byte stamp + JSON), Fanout with compression on
# against itself with it off, against the gorilla hub with compression and
# PreparedMessage, a rate sweep, idle memory with compression negotiated,
# and compress calls per broadcast from Fanout's own metrics. Loopback
# only; every run stops by itself. Raw JSON goes to bench/results/<date>-<commit>-deflate/.
#   bench/scripts/deflate.sh [idle|rate5|gorilla|uws|sweep|calls]   (each part under 10 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:?part: idle, rate5, gorilla, uws, sweep or calls}
export SKIP_NODE=1
port=9470
eval "$(PORT=$port bench/peers/start.sh)"
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-deflate"
mkdir -p "$out"
url=ws://127.0.0.1:$port/ws
log() { tee -a "$out/$1.md"; }
msg="-deflate -json-payload -size 1024"
ON="$FANOUT" OFF="$FANOUT -compression off" GZ="$GORILLA -compression" UZ="$UWS --compression"

case $what in
idle) # RSS per idle connection with compression negotiated, and with it off
	for s in on:"$ON" off:"$OFF"; do
		$BENCH -url $url -scenario idle -conns 19000 -deflate -duration 3s -settle 3s -server-cmd "${s#*:}" \
			-label "fanout-${s%%:*}" -json "$out/idle-19000-${s%%:*}.json" | log idle
	done ;;
rate5) # 19,000 x 5 msg/s: compression on against off, same clients
	$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate 5 $msg -duration 10s -settle 3s \
		-server-cmd "$ON" -label fanout-on -vs-cmd "$OFF" -vs-label fanout-off -rounds 2 \
		-json "$out/broadcast-19000-5-on-vs-off.json" | log rate5 ;;
gorilla) # 19,000 x 5 msg/s: Fanout against the gorilla hub, both compressing
	$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate 5 $msg -duration 10s -settle 3s \
		-server-cmd "$ON" -label fanout-on -vs-cmd "$GZ" -vs-label gorilla-compression -rounds 2 \
		-json "$out/broadcast-19000-5-vs-gorilla.json" | log gorilla ;;
uws) # 19,000 x 5 msg/s: Fanout against uWebSockets.js with its shared compressor
	$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate 5 $msg -duration 10s -settle 3s \
		-server-cmd "$ON" -label fanout-on -vs-cmd "$UZ" -vs-label uws-shared-compressor -rounds 2 \
		-json "$out/broadcast-19000-5-vs-uws.json" | log uws ;;
sweep) # 19,000 subscribers at higher rates, compression on and off
	for rate in ${RATES:-20 40}; do
		$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate "$rate" $msg -duration 10s -settle 3s \
			-server-cmd "$ON" -label fanout-on -vs-cmd "$OFF" -vs-label fanout-off -rounds 1 \
			-json "$out/broadcast-19000-$rate-on-vs-off.json" | log sweep
	done ;;
calls) # compress calls per broadcast, from the server's metrics
	admin=127.0.0.1:$((port + 1))
	$FANOUT -admin-addr $admin & pid=$!
	trap 'kill $pid' EXIT
	until curl -fs "http://$admin/readyz" >/dev/null; do sleep 0.2; done
	$BENCH -url $url -scenario broadcast -conns 19000 -msg-rate 5 $msg -duration 10s -settle 3s -server-pid $pid \
		-label fanout-on -json "$out/broadcast-19000-5-calls.json" | log calls
	curl -fs "http://$admin/metrics" | grep -E '^fanout_(broadcasts_total|compress_|handshakes_compressed_total|frames_out_total|bytes_out_total|inflate_errors_total)' | tee "$out/calls-metrics.txt" | log calls ;;
*) echo "unknown part $what" >&2; exit 2 ;;
esac
