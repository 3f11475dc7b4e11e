#!/usr/bin/env bash
# one.sh LABEL SERVERCMD PART OUTDIR [extra bench args]  (port 9460)
label=$1 cmd=$2 part=$3 out=$4; shift 4
port=9460
case $part in
t*x*) IFS=x read -r n rate <<<"${part#t}"; args=(-url "ws://127.0.0.1:$port/ws" -conns "$n" -msg-rate "$rate" -drain 5s) ;;
ceiling) args=(-url "ws://127.0.0.1:$port/ws" -conns 5000 -msg-rate 40 -ceiling -ceiling-factor 1.6 -ceiling-p99 1s -drain 3s) ;;
idle) args=(-url "ws://127.0.0.1:$port/ws" -scenario idle -conns 19000) ;;
slow) args=(-url "ws://127.0.0.1:$port/ws" -scenario slow -conns 18000 -msg-rate 5 -slow-frac 0.01 -stalled 1000 -drain 5s) ;;
echo) args=(-url "ws://127.0.0.1:$port/echo" -scenario echo -closed-loop -conns 100 -drain 2s) ;;
esac
[[ $cmd == *admin-addr* ]] && args+=(-metrics-url "http://127.0.0.1:$((port + 1))/metrics")
pin=(-pin-server "${SERVER_CPU:-0}" -pin-client "${CLIENT_CPU:-1}")
[[ -n ${NOPIN:-} ]] && pin=()
mkdir -p $out
name=$part-$label
"${BIN:-/tmp/s3/final2}/fanout-bench" "${args[@]}" "${pin[@]}" -size 64 -duration 10s -settle 2s -server-cmd "$cmd" -label "$label" \
  -server-log "$out/$name-server.log" -json "$out/$name.json" "$@" 2>"$out/$name-progress.txt" | tee -a "$out/$part.md"
