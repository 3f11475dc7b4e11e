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

# start_rabbitmq starts a rabbitmq-server with the stream plugin only (no
# AMQP listener), its own data directory, node name, epmd and ports,
# Debian's defaults otherwise, and waits for it: sets $sport (the stream
# port), $qpid, $beam (the Erlang VM's pid, for CPU and RSS) and $epmd;
# stop_rabbitmq ends it.
start_rabbitmq() {
	command -v rabbitmq-server >/dev/null || { echo "needs rabbitmq-server (Debian: apt-get install rabbitmq-server)" >&2; return 1; }
	local dport
	sport=$(free_port) dport=$(free_port) epmd=$(free_port)
	mkdir -p "$tmp/rmq"
	printf 'listeners.tcp = none\nstream.listeners.tcp.1 = 127.0.0.1:%s\nstream.advertised_host = 127.0.0.1\nstream.advertised_port = %s\nloopback_users = none\n' \
		"$sport" "$sport" >"$tmp/rmq/rabbitmq.conf"
	echo '[rabbitmq_stream].' >"$tmp/rmq/enabled_plugins"
	: >"$tmp/rmq/env.conf"
	epmd -port "$epmd" -address 127.0.0.1 -daemon
	HOME=$tmp/rmq RABBITMQ_NODENAME=fanout-bench-$sport@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT=$dport \
		ERL_EPMD_PORT=$epmd RABBITMQ_MNESIA_BASE=$tmp/rmq/data RABBITMQ_LOG_BASE=$tmp/rmq/log RABBITMQ_LOGS=- \
		RABBITMQ_CONFIG_FILE=$tmp/rmq/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$tmp/rmq/enabled_plugins \
		RABBITMQ_CONF_ENV_FILE=$tmp/rmq/env.conf RABBITMQ_PID_FILE=$tmp/rmq/pid \
		/usr/lib/rabbitmq/bin/rabbitmq-server >"$out/rabbitmq.log" 2>&1 &
	qpid=$!
	for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/"$sport") 2>/dev/null && break; sleep 0.1; done
	beam=$(cat "$tmp/rmq/pid")
	echo "rabbitmq-server $(dpkg-query -W -f '${Version}' rabbitmq-server) beam pid $beam, rabbitmq_stream plugin, default settings" | log
}
stop_rabbitmq() {
	[[ -z ${qpid:-} ]] || stop "$qpid"
	[[ -z ${epmd:-} ]] || epmd -port "$epmd" -kill >/dev/null 2>&1 || true
	qpid= epmd=
}
