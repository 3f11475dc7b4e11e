#!/usr/bin/env bash
# Issue 9's table, Fanout against uWebSockets.js, nbio, the gorilla hub and
# Node ws: one pinned core per side (server on CPU $SERVER_CPU, generator
# on CPU $CLIENT_CPU), 64-byte broadcasts on /ws, 10 s phases, fresh server
# per run, servers alternating within each part, $ROUNDS rounds:
#   t19000x2 t19000x5 t19000x20 t5000x76   subscribers x msg/s
#   ceiling                                5,000 subscribers, rate raised until the server stops keeping up
#   echo                                   100 clients in a closed loop on /echo
#   idle19000                              RSS per idle connection (any count: idleN)
#   storm5000x128                          5,000 subscribers x 5 msg/s while 128 churners open and close
#                                          connections: handshakes/s, and the subscribers' p99 meanwhile
# SCHEME=wss runs it all over TLS against the servers that serve wss (fanout,
# uws), with one certificate (bench/peers/cert.sh), into .../wss/ instead
# (bench/scripts/wss.sh: issue 19's table). DURATION (10s) is each phase's
# measurement time; a smoke run takes small parts, e.g. t200x5 idle200.
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
	FANOUT_TLS="$BIN/fanout-$ref ${FANOUT_TLS#* }"
fi
scheme=${SCHEME:-ws}
servers=${SERVERS:-fanout uws nbio gorilla node}
declare -A cmd=([fanout]=$FANOUT [uws]=$UWS [nbio]=$NBIO [gorilla]=$GORILLA [node]=$NODEWS)
trust=()
if [[ $scheme == wss ]]; then
	servers=${SERVERS:-fanout uws}
	cmd=([fanout]=$FANOUT_TLS [uws]=$UWS_TLS) # the others serve ws only
	trust=(-ca-file "$CERT")
fi
cmd[fanout]="${cmd[fanout]} -admin-addr 127.0.0.1:$((port + 1))"
out="bench/results/$(date -u +%Y-%m-%d)-$ref/$([[ $scheme == wss ]] && echo wss || echo peers)"
mkdir -p "$out"
rounds=${ROUNDS:-2}
pin=(-pin-server "${SERVER_CPU:-0}" -pin-client "${CLIENT_CPU:-1}")

# one SERVER PART ROUND: one fanout-bench run, its JSON, table and plots.
one() {
	local s=$1 part=$2 round=$3 name=$2-$1-r$3 args=() url=$scheme://127.0.0.1:$port
	[[ -n ${cmd[$s]:-} ]] || { echo "no $scheme command for $s" >&2; return 1; }
	case $part in
	t*x*) IFS=x read -r n rate <<<"${part#t}"
		args=(-url "$url/ws" -conns "$n" -msg-rate "$rate" -drain 5s) ;;
	ceiling) args=(-url "$url/ws" -conns 5000 -msg-rate 40 -ceiling -ceiling-factor 1.6 -ceiling-p99 1s -drain 3s) ;;
	echo) args=(-url "$url/echo" -scenario echo -closed-loop -conns 100 -drain 2s) ;;
	idle*) args=(-url "$url/ws" -scenario idle -conns "${part#idle}") ;;
	storm*x*) IFS=x read -r n churners <<<"${part#storm}"
		args=(-url "$url/ws" -conns "$n" -msg-rate 5 -churners "$churners" -drain 5s) ;;
	*) echo "unknown part $part" >&2; return 1 ;;
	esac
	[[ $s != fanout ]] || args+=(-metrics-url "http://127.0.0.1:$((port + 1))/metrics")
	$BENCH "${args[@]}" "${trust[@]}" "${pin[@]}" -size 64 -duration "${DURATION:-10s}" -settle 2s -server-cmd "${cmd[$s]}" -label "$s" \
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
echo "# $(date -u +%FT%TZ) Fanout $ref, generator and peers $(git rev-parse --short HEAD), $scheme, $(nproc) cores, $(go version | cut -d' ' -f3), node $(node --version), ulimit -n $(ulimit -n), server CPU ${SERVER_CPU:-0}, generator CPU ${CLIENT_CPU:-1}" | tee -a "$out/README.md"
only=("${@:2}")
[[ ${#only[@]} -gt 0 ]] || only=(${PARTS:-t19000x2 t19000x5 t19000x20 t5000x76 echo ceiling})
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
