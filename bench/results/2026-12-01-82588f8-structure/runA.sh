#!/bin/bash
# 19,000 idle, then 19,000 x 5 msg/s room broadcast; new (structure) vs old (e6ed171), alternating, 2 rounds.
set -x
B=/tmp/structure-bench
cd $B
$B/fanout-bench -url ws://127.0.0.1:9731/ws -scenario idle -conns 19000 -rate 5000 -duration 10s -settle 3s -rounds 2 -quiet \
  -server-cmd "$B/fanout-new -addr 127.0.0.1:9731 -log-level warn" -vs-cmd "$B/fanout-old -addr 127.0.0.1:9731 -log-level warn" \
  -json $B/idle-19000.json > $B/idle-19000.md 2> $B/idle-19000.err
$B/fanout-bench -url ws://127.0.0.1:9732/ws -scenario broadcast -conns 19000 -msg-rate 5 -size 64 -rate 5000 -duration 10s -settle 3s -rounds 2 -quiet \
  -server-cmd "$B/fanout-new -addr 127.0.0.1:9732 -log-level warn" -vs-cmd "$B/fanout-old -addr 127.0.0.1:9732 -log-level warn" \
  -json $B/broadcast-19000x5.json > $B/broadcast-19000x5.md 2> $B/broadcast-19000x5.err
