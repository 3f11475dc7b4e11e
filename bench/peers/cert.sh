#!/usr/bin/env bash
# Makes the benchmarks' certificate, the same for every server of a wss run:
# ECDSA P-256, self-signed, for 127.0.0.1 and localhost, valid 30 days.
# Fanout takes it as -tls-cert/-tls-key, the uWS.js peer as --cert/--key,
# and fanout-bench trusts it with -ca-file (it is its own CA).
#   bench/peers/cert.sh DIR    # -> DIR/cert.pem, DIR/key.pem
set -euo pipefail
dir=${1:?directory for cert.pem and key.pem}
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null
