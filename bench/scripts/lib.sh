# Shared by the multi-process benchmark scripts (brokers.sh, scaleout.sh,
# storm.sh, million.sh, hooks.sh): source it after `cd` to the repository root, then
# call begin_run.

# begin_run NAME PACKAGE...: the run's results directory $out
# (bench/results/<date>-<commit>-NAME), a scratch directory $tmp with each
# package built into it under its last path element, and log, which appends
# its input to $out/README.md as it prints it.
begin_run() {
	local name=$1 pkg
	shift
	out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)-$name"
	mkdir -p "$out"
	tmp=$(mktemp -d)
	for pkg in "$@"; do go build -o "$tmp/${pkg##*/}" "./$pkg"; done
}
log() { tee -a "$out/README.md"; }

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
