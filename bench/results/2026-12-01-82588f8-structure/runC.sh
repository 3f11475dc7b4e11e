#!/bin/bash
# 19,000 subscribers over 1,000 channels, 2 msg/s per channel through the HTTP API, 16 publishers; old first, then new, 2 rounds.
set -x
B=/tmp/structure-bench
cd $B
$B/fanout-bench -url ws://127.0.0.1:9733/ws -scenario broadcast -conns 19000 -msg-rate 2 -size 64 -channels 1000 -publishers 16 \
  -publish-url http://127.0.0.1:9733/api/publish -api-key bench -rate 5000 -duration 20s -settle 3s -rounds 2 -quiet \
  -server-cmd "$B/fanout-old -addr 127.0.0.1:9733 -log-level warn -api-key bench" -vs-cmd "$B/fanout-new -addr 127.0.0.1:9733 -log-level warn -api-key bench" \
  -json $B/channels-k1000-http-oldfirst.json > $B/channels-k1000-http-oldfirst.md 2> $B/channels-k1000-http-oldfirst.err
