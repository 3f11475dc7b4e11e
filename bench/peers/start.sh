#!/usr/bin/env bash
# Builds the benchmark peers and Fanout into $BIN (default /tmp/fanout-peers)
# and prints the server commands for fanout-bench -server-cmd / -vs-cmd,
# $BENCH and $PLOT (bench/plot: charts of -json documents); $FANOUT_TLS and
# $UWS_TLS serve wss with one certificate ($CERT, from cert.sh), which
# fanout-bench trusts with -ca-file "$CERT".
# SKIP_NODE=1 skips installing the Node peers' dependencies (ws, uwebsockets).
# Peers: gorilla (goroutine-per-connection hub), Node ws (textbook chat),
# uWebSockets.js (npm uwebsockets 3.0.6, a republish of uWebSockets.js v20;
# app.publish on one topic) and nbio (nbhttp engine). All serve /ws (every
# message to every client, the sender included) and /echo.
#   eval "$(bench/peers/start.sh)"; fanout-bench -url ws://127.0.0.1:9400/ws -server-cmd "$FANOUT" -vs-cmd "$GORILLA"
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN:-/tmp/fanout-peers}
mkdir -p "$bin"
go build -o "$bin/fanout" ./cmd/fanout
go build -o "$bin/fanout-bench" ./cmd/fanout-bench
go build -C bench/peers -o "$bin/gorilla" ./gorilla # a module of its own
go build -C bench/peers -o "$bin/nbio" ./nbio
go build -C bench/plot -o "$bin/plot" . # draws -json documents
if [ -z "${SKIP_NODE:-}" ]; then
	[ -d bench/peers/node/node_modules/ws ] || npm ci --prefix bench/peers/node --no-audit --no-fund >&2
	[ -d bench/peers/uws/node_modules/uwebsockets ] || npm ci --prefix bench/peers/uws --no-audit --no-fund >&2
fi
[ -f "$bin/cert.pem" ] || bench/peers/cert.sh "$bin" # one certificate for every wss server
port=${PORT:-9400}
tls="--cert $bin/cert.pem --key $bin/key.pem"
echo "FANOUT='$bin/fanout -addr 127.0.0.1:$port -log-level warn'"
echo "FANOUT_TLS='$bin/fanout -addr 127.0.0.1:$port -log-level warn -tls-cert $bin/cert.pem -tls-key $bin/key.pem'"
echo "UWS_TLS='node $(pwd)/bench/peers/uws/server.js $port $tls'"
echo "CERT='$bin/cert.pem'"
echo "GORILLA='$bin/gorilla -addr 127.0.0.1:$port'"
echo "NODEWS='node $(pwd)/bench/peers/node/server.js $port'"
echo "UWS='node $(pwd)/bench/peers/uws/server.js $port'"
echo "NBIO='$bin/nbio -addr 127.0.0.1:$port'"
echo "BENCH='$bin/fanout-bench'"
echo "PLOT='$bin/plot'"
