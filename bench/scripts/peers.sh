#!/usr/bin/env bash
# Issue 9's table, Fanout against uWebSockets.js, nbio, the gorilla hub and
# Node ws: one pinned core per side (server on CPU $SERVER_CPU, generator
# on CPU $CLIENT_CPU), 64-byte broadcasts on /ws, 10 s phases, fresh server
# per run, servers alternating within each part, $ROUNDS rounds:
#   t19000x2 t19000x5 t19000x20 t5000x76   subscribers x msg/s
#   ceiling                                5,000 subscribers, rate raised until the server stops keeping up
#   echo                                   100 clients in a closed loop on /echo
# Fanout runs with -admin-addr so writes per delivery come from its metrics.
# Raw JSON, tables and charts (every server of a part and round on one
# chart: bench/plot) go to bench/results/<date>-<commit>/peers/,
# <commit> being Fanout's: FANOUT_REF=<commit> measures the server built
# from that commit (the generator and peers stay those of the work tree).
#   bench/scripts/peers.sh                     # everything (about 50 minutes)
#   bench/scripts/peers.sh 1 t19000x20 echo    # round 1, two parts
# RUNNER prefixes each part (all servers of one part and round), e.g. a
# command that waits for a quiet machine; each part takes under 5 minutes
# except ceiling, which runs one server per call (up to 4 minutes each).
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/../.."
port=${PORT:-9400}
export BIN=${BIN:-/tmp/fanout-peers-$(basename "$PWD")} # per work tree: others build theirs
eval "$(PORT=$port bench/peers/start.sh)"
ref=$(git rev-parse --short "${FANOUT_REF:-HEAD}")
if [[ -n ${FANOUT_REF:-} ]]; then
	src=$(mktemp -d)
	git archive "$ref" | tar -x -C "$src"
	(cd "$src" && go build -o "$BIN/fanout-$ref" ./cmd/fanout)
	rm -rf "$src"
	FANOUT="$BIN/fanout-$ref ${FANOUT#* }"
fi
FANOUT="$FANOUT -admin-addr 127.0.0.1:$((port + 1))"
out="bench/results/$(date -u +%Y-%m-%d)-$ref/peers"
mkdir -p "$out"
servers=${SERVERS:-fanout uws nbio gorilla node}
rounds=${ROUNDS:-2}
pin=(-pin-server "${SERVER_CPU:-0}" -pin-client "${CLIENT_CPU:-1}")
declare -A cmd=([fanout]=$FANOUT [uws]=$UWS [nbio]=$NBIO [gorilla]=$GORILLA [node]=$NODEWS)

# one SERVER PART ROUND: one fanout-bench run, its JSON, table and plots.
one() {
	local s=$1 part=$2 round=$3 name=$2-$1-r$3 args=()
	case $part in
	t*x*) IFS=x read -r n rate <<<"${part#t}"
		args=(-url "ws://127.0.0.1:$port/ws" -conns "$n" -msg-rate "$rate" -drain 5s) ;;
	ceiling) args=(-url "ws://127.0.0.1:$port/ws" -conns 5000 -msg-rate 40 -ceiling -ceiling-factor 1.6 -ceiling-p99 1s -drain 3s) ;;
	echo) args=(-url "ws://127.0.0.1:$port/echo" -scenario echo -closed-loop -conns 100 -drain 2s) ;;
	*) echo "unknown part $part" >&2; return 1 ;;
	esac
	[[ $s != fanout ]] || args+=(-metrics-url "http://127.0.0.1:$((port + 1))/metrics")
	$BENCH "${args[@]}" "${pin[@]}" -size 64 -duration 10s -settle 2s -server-cmd "${cmd[$s]}" -label "$s" \
		-server-log "$out/$name-server.log" -json "$out/$name.json" 2>"$out/$name-progress.txt" |
		tee -a "$out/$part.md"
}

# part ROUND PART: every server in turn (the ceiling: the servers in $SERVERS).
part() {
	local s jsons=()
	for s in $servers; do
		one "$s" "$2" "$1"
		jsons+=("$out/$2-$s-r$1.json")
	done
	$PLOT -o "$out/plots/$2-r$1${SERVERS:+-${servers// /-}}" "${jsons[@]}"
}

if [[ ${1:-} == part ]]; then # a call made through RUNNER
	part "$2" "$3"
	exit
fi
echo "# $(date -u +%FT%TZ) Fanout $ref, generator and peers $(git rev-parse --short HEAD), $(nproc) cores, $(go version | cut -d' ' -f3), node $(node --version), ulimit -n $(ulimit -n), server CPU ${SERVER_CPU:-0}, generator CPU ${CLIENT_CPU:-1}" | tee -a "$out/README.md"
only=("${@:2}")
[[ ${#only[@]} -gt 0 ]] || only=(t19000x2 t19000x5 t19000x20 t5000x76 echo ceiling)
for round in ${1:-$(seq "$rounds")}; do
	for p in "${only[@]}"; do
		if [[ $p == ceiling ]]; then
			for s in $servers; do SERVERS=$s ${RUNNER:-} "$self" part "$round" ceiling; done
		else
			${RUNNER:-} "$self" part "$round" "$p"
		fi
	done
done
echo "raw results in $out"
