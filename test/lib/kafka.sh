# shellcheck shell=bash
#
# test/lib/kafka.sh: the local Kafka broker (tools/tributary-kafka-mock) for the demo and
# the benchmarks. Source it; it defines one function and sets no shell options.
#
#   trib_kafka_mock_start DIR TIMEOUT_S [mock arguments...]
#       start the broker in the background as a child of the calling shell (so it stops
#       when the caller dies), stdout and stderr in DIR/stdout and DIR/stderr, and wait up to
#       TIMEOUT_S seconds for its bootstrap line. Sets broker_pid and bootstrap; returns 1
#       (with a message on stderr) if the broker exits or prints nothing in time. The caller
#       stops it with `kill -TERM "$broker_pid"; wait "$broker_pid"`.
#       Its start can take seconds per partition: librdkafka 2.0.2's mock thread may serve
#       each partition's leader request only when its 1 s poll times out.

trib_kafka_mock_start() {
	local dir="$1" timeout_s="$2" i
	shift 2
	mkdir -p "$dir"
	tools/tributary-kafka-mock "$@" >"$dir/stdout" 2>"$dir/stderr" </dev/null &
	broker_pid=$!
	bootstrap=""
	for ((i = 0; i < timeout_s * 10; i++)); do
		bootstrap="$(sed -n 's/^bootstrap=//p' "$dir/stdout")"
		[ -n "$bootstrap" ] && return 0
		if ! kill -0 "$broker_pid" 2>/dev/null; then
			echo "the Kafka broker exited before it was ready" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "the Kafka broker printed no bootstrap address within $timeout_s s" >&2
	return 1
}
