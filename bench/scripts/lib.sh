# Shared by the multi-process benchmark scripts (brokers.sh, scaleout.sh,
# storm.sh): source it after `cd` to the repository root and after setting
# $tmp (a scratch directory) and log (a function appending to the run's README).

# free_port prints a free TCP port below the ephemeral range, so that no
# outgoing connection takes it meanwhile.
free_port() {
	local p
	for p in $(shuf -i 20000-29999 -n 100); do
		ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
	return 1
}

# stop sends SIGTERM to every pid, waits up to 10 s for each, then SIGKILLs it.
stop() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
}

# start_redis starts a redis-server without persistence on a free port and
# waits for it: sets $rport and $rpid, logs the version.
start_redis() {
	command -v redis-server >/dev/null || { echo "needs redis-server (Debian: apt-get install redis-server)" >&2; return 1; }
	rport=$(free_port)
	redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --logfile "$tmp/redis.log" &
	rpid=$!
	for _ in $(seq 100); do [[ $(redis-cli -p "$rport" ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done
	echo "redis-server $(redis-server --version | cut -d' ' -f3) pid $rpid, --save '' --appendonly no" | log
}
