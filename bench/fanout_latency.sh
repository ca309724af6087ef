#!/usr/bin/env bash
# bench/fanout_latency.sh: produce -> listener latency of snapshot fan-out (docs/fanout.md).
#
# On a private throwaway cluster and the local Kafka broker (tools/tributary-kafka-mock, topic
# fan with 4 partitions): a kafka stream `fan` (format json, key id, batch_ms BATCH_MS) with a
# snapshot and fan-out on its stream channel (payload full). A producer (Python, paced) writes
# RATE messages/s for SECONDS seconds into kcat -P (linger.ms 1), each
#   {"id": "k<n % KEYS>", "ts": <microseconds since the epoch when produced>, "pad": "..."}
# while LISTENERS connections LISTEN on tributary.fan: by default from one C process
# (bench/fanout_listen.c, libpq, poll() over all; LISTENER=c), or from Python processes
# (psycopg, select() over their share; LISTENER=python). For every notification each
# listener receives, latency = receive time - ts of the record it carries. Printed: deliveries, p50, p90, p99 and max over all listeners,
# for each (RATE, LISTENERS) pair.
#
# Coalescing: a batch notifies each key once (its newest state), so fewer notifications than
# messages go out when keys repeat within a batch; the latency is that of the state notified.
#
# Usage: bench/fanout_latency.sh
# Environment: RATES="1000 10000", LISTENER_COUNTS="1 50", SECONDS_EACH=10, KEYS=1000,
#   BATCH_MS=5, LISTENER=c (or python), PROCS (listener processes sharing the connections:
#   1 for c, 2 for python), KEEP_TMP=1
# A warm-up of 2 s at 200 messages/s, not measured, runs first (kcat's and the worker's
# first fetches). On 2 vCPUs the listeners themselves take CPU from the server: at 10000/s
# with 50 listeners they receive 500000 notifications/s between them, which Python
# listeners cannot keep up with (bench/RESULTS.md).
# Run by hand; nothing here asserts on timing.
set -euo pipefail

rates="${RATES:-1000 10000}"
listener_counts="${LISTENER_COUNTS:-1 50}"
seconds="${SECONDS_EACH:-10}"
keys="${KEYS:-1000}"
batch_ms="${BATCH_MS:-5}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
# shellcheck source=test/lib/kafka.sh
source test/lib/kafka.sh

make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi
make -s tools

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-fbench.XXXXXX")"
broker_pid=""
cleanup() {
	local rc=$?
	set +e
	trib_cluster_stop "$tmp"
	if [ -n "$broker_pid" ]; then
		kill -TERM "$broker_pid" 2>/dev/null
		wait "$broker_pid" 2>/dev/null
	fi
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "files kept in $tmp"; else rm -rf "$tmp"; fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT

trib_cluster_start "$tmp" "tributary.database = 'postgres'" "tributary.naptime = '1s'" \
	"max_connections = 200" "synchronous_commit = off" >/dev/null
sql() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
trib_kafka_mock_start "$tmp/kafka" 30 --brokers 1 --topic fan:4 || exit 1
chmod 755 "$tmp"

sql <<SQL
CREATE EXTENSION tributary;
CREATE TABLE fan (id text, ts bigint, pad text);
SELECT tributary.create_stream('fan', 'fan', 'kafka',
    '{"brokers": "$bootstrap", "topic": "fan", "batch_ms": $batch_ms,
      "librdkafka": {"fetch.wait.max.ms": "1"}}', key => 'id');
SELECT tributary.set_snapshot('fan');
SELECT tributary.set_fanout('fan', '{stream}', heartbeat => NULL);
SQL
until [ "$(sql -c "SELECT state FROM tributary.streams WHERE name = 'fan'")" = running ]; do sleep 0.2; done
conninfo="host=$PGHOST port=$PGPORT dbname=postgres user=$(trib_os_user)"

cat >"$tmp/listen.py" <<'PY'
import select, sys, time
import psycopg
conninfo, count, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conns = [psycopg.connect(conninfo, autocommit=True) for _ in range(count)]
for c in conns:
    c.execute('LISTEN "tributary.fan"')
open(out + ".ready", "w").close()
lat = []
deadline = time.time() + seconds
while time.time() < deadline:
    r, _, _ = select.select([c.fileno() for c in conns], [], [], 0.2)
    for c in conns:
        if c.fileno() not in r:
            continue
        c.pgconn.consume_input()
        while (n := c.pgconn.notifies()) is not None:
            now = time.time_ns() // 1000
            # the record's "ts" (jsonb text: "ts": <digits>), without parsing the whole payload
            p = n.extra
            i = p.find(b'"ts": ')
            if i >= 0:
                j = p.find(b',', i)
                lat.append(now - int(p[i + 6:j]))
lat.sort()
with open(out, "w") as f:
    f.write(" ".join(str(x) for x in lat))
PY
cat >"$tmp/produce.py" <<'PY'
import sys, time
rate, seconds, keys = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
pad = "x" * 60
start = time.time()
n = 0
out = sys.stdout
while True:
    elapsed = time.time() - start
    if elapsed >= seconds:
        break
    due = int(elapsed * rate)
    while n < due:
        out.write('{"id": "k%d", "ts": %d, "pad": "%s"}\n' % (n % keys, time.time_ns() // 1000, pad))
        n += 1
    out.flush()
    time.sleep(0.001)
PY

pct() {	# file of sorted latencies (us), percentile -> ms
	awk -v p="$2" '{ n = split($0, a, " "); if (n == 0) { print "-"; exit }
		i = int(n * p); if (i >= n) i = n - 1; printf "%.1f", a[i + 1] / 1000 }' "$1"
}

# the listener: C (bench/fanout_listen.c, libpq; one process) or Python (psycopg)
listener="${LISTENER:-c}"
case "$listener" in
	c)
		cc -O2 -Wall -Werror -o "$tmp/fanout_listen" bench/fanout_listen.c \
			-I"$(pg_config --includedir)" -L"$(pg_config --libdir)" -lpq
		listen_cmd=("$tmp/fanout_listen")
		procs_default=1
		;;
	python)
		listen_cmd=(/usr/bin/python3 "$tmp/listen.py")
		procs_default=2
		;;
	*) echo "LISTENER must be c or python" >&2; exit 2 ;;
esac
procs_max="${PROCS:-$procs_default}"
/usr/bin/python3 "$tmp/produce.py" 200 2 "$keys" | kcat -P -b "$bootstrap" -t fan -X linger.ms=1 2>"$tmp/kcat.err"
sleep 2
# the stream worker's CPU (user + system, % of one CPU) over each run, from /proc
worker_pid="$(sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'tributary stream worker'")"
worker_ticks() { awk '{ print $14 + $15 }' "/proc/$worker_pid/stat"; }
hz="$(getconf CLK_TCK)"
printf '%-8s %-9s %11s %8s %8s %8s %8s %10s\n' rate listeners deliveries p50_ms p90_ms p99_ms max_ms worker_cpu
for rate in $rates; do
	for listeners in $listener_counts; do
		out="$tmp/lat.$rate.$listeners"
		procs=$((listeners < procs_max ? listeners : procs_max))
		pids=()
		for p in $(seq "$procs"); do
			share=$(((listeners + procs - p) / procs))
			rm -f "$out.$p" "$out.$p.ready"
			"${listen_cmd[@]}" "$conninfo" "$share" "$((seconds + 5))" "$out.$p" &
			pids+=($!)
		done
		for p in $(seq "$procs"); do until [ -f "$out.$p.ready" ]; do sleep 0.1; done; done
		ticks0="$(worker_ticks)"
		/usr/bin/python3 "$tmp/produce.py" "$rate" "$seconds" "$keys" |
			kcat -P -b "$bootstrap" -t fan -X linger.ms=1 2>"$tmp/kcat.err"
		ticks1="$(worker_ticks)"
		wait "${pids[@]}"
		for p in $(seq "$procs"); do tr ' ' '\n' <"$out.$p"; echo; done | grep -v '^$' | sort -n | tr '\n' ' ' >"$out"
		printf '%-8s %-9s %11s %8s %8s %8s %8s %9s%%\n' "$rate" "$listeners" \
			"$(awk '{ print NF }' "$out")" "$(pct "$out" 0.5)" "$(pct "$out" 0.9)" \
			"$(pct "$out" 0.99)" "$(pct "$out" 1.0)" \
			"$(awk -v t="$((ticks1 - ticks0))" -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.0f", 100 * t / hz / s }')"
	done
done
echo "notifications skipped: $(sql -c "SELECT notifications_skipped FROM tributary.stream_stats WHERE stream = 'fan' AND partition IS NULL")"
