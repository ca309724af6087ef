# shellcheck shell=bash
#
# test/lib/redis.sh: a throwaway redis-server for the demo and the benchmarks (the Perl
# tests have TributaryRedis.pm). Source it; it defines one function and sets no shell
# options.
#
#   trib_redis_start DIR
#       start redis-server in the background as a child of the calling shell, on a free
#       loopback port, nothing saved to disk, its files and log (DIR/log) in DIR, and wait
#       up to 10 s for it to answer PING. Sets redis_pid and redis_port; returns 1 (with a
#       message on stderr) if no port is free, or the server exits or does not answer in
#       time. The caller stops it with `kill -TERM "$redis_pid"; wait "$redis_pid"`.

trib_redis_start() {
	local dir="$1" i p
	redis_port=""
	redis_pid=""
	for ((i = 0; i < 100; i++)); do
		p=$((26379 + RANDOM % 10000))
		if ! timeout 2 bash -c ": </dev/tcp/127.0.0.1/$p" 2>/dev/null; then redis_port="$p"; break; fi
	done
	if [ -z "$redis_port" ]; then
		echo "no free loopback port for redis-server" >&2
		return 1
	fi
	mkdir -p "$dir"
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
		--logfile "$dir/log" </dev/null >/dev/null 2>&1 &
	redis_pid=$!
	for ((i = 0; i < 100; i++)); do
		[ "$(redis-cli -h 127.0.0.1 -p "$redis_port" PING 2>/dev/null)" = PONG ] && return 0
		if ! kill -0 "$redis_pid" 2>/dev/null; then
			echo "redis-server exited before it answered" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "redis-server did not answer within 10 s" >&2
	return 1
}
