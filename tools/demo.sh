#!/usr/bin/env bash
# make demo: tributary's Kafka path, end to end, on this machine only.
#
# Starts a private throwaway PostgreSQL cluster with tributary preloaded and a local Kafka
# broker (tools/tributary-kafka-mock, librdkafka's mock cluster) with a topic `orders` of 4
# partitions. Produces 5000 sample order events to it with kcat, keyed by customer, some of
# them malformed in different ways. Declares a `kafka` stream into a typed table, waits for
# its background worker to consume the topic, and prints what landed: rows, dead letters
# with their errors and source positions, the stored offsets, stream_stats. Then it fixes
# the cause of one kind of failure and replays the dead letters. Quality windows: the
# Kafka stream's (with dead letters lowering validity) next to window_quality over the
# table, then a local stream of sensor readings with live windows, a burst of bad data that
# raises an alert (its handler pages), and the recovery. Then snapshots and fan-out: the
# orders stream keeps each customer's latest order, tributary-listen follows one customer
# while new orders and a tombstone arrive through Kafka. Last, the same insert path without
# a broker: a `local` stream fed by tributary.ingest.
#
# SOURCE=redis (`make demo SOURCE=redis`) runs the same demo on Redis Streams instead of
# Kafka: a redis-server of its own on a free loopback port, in the demo's temporary directory
# (nothing saved to disk), stopped at exit; the 5000 events as entries of four stream keys
# orders:0 .. orders:3 (the customer's number modulo 4, as the keys spread the Kafka
# messages over partitions), each `XADD orders:N * customer <key> payload <JSON>`, loaded with
# one redis-cli --pipe; a `redis` stream with "fields": "payload" reads them. The new orders
# of the snapshot section are XADDs too, and the tombstone, which Redis entries have no form
# for, goes through tributary.ingest with a key and no payload.
#
# The cluster and the broker are removed on any exit (KEEP_TMP=1 keeps the cluster's files).
# DEMO_WAIT=N changes how long to wait for the stream to catch up (default 60 s).
set -euo pipefail

source_kind="${SOURCE:-kafka}"
case "$source_kind" in
kafka | redis) ;;
*) echo "demo: SOURCE must be kafka or redis, not '$source_kind'" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
# shellcheck source=test/lib/kafka.sh
source test/lib/kafka.sh
# shellcheck source=test/lib/redis.sh
source test/lib/redis.sh

started=$SECONDS
bash tools/bootstrap.sh
make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi
make -s tools

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-demo.XXXXXX")"
broker_pid=""
redis_pid=""
cleanup() {
	local rc=$?
	set +e
	trib_cluster_stop "$tmp"
	if [ -n "$broker_pid" ]; then
		kill -TERM "$broker_pid" 2>/dev/null
		wait "$broker_pid" 2>/dev/null
	fi
	if [ -n "$redis_pid" ]; then
		kill -TERM "$redis_pid" 2>/dev/null
		wait "$redis_pid" 2>/dev/null
	fi
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "demo files kept in $tmp"; else rm -rf "$tmp"; fi
	return "$rc"
}
trap cleanup EXIT
# A signal ends the script through `exit`, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Fail loudly: the message, then what the server and the broker said last.
fail() {
	echo >&2
	echo "demo: FAILED: $*" >&2
	if [ -f "$tmp/log/postgresql.log" ]; then
		echo "--- last lines of the server log ($tmp/log/postgresql.log):" >&2
		tail -n 40 "$tmp/log/postgresql.log" >&2
	fi
	if [ -s "$tmp/kafka/stderr" ]; then
		echo "--- last lines of the broker's stderr:" >&2
		tail -n 20 "$tmp/kafka/stderr" >&2
	fi
	if [ -s "$tmp/redis/log" ]; then
		echo "--- last lines of redis-server's log:" >&2
		tail -n 20 "$tmp/redis/log" >&2
	fi
	exit 1
}

trib_cluster_start "$tmp" "tributary.database = 'postgres'" "tributary.naptime = '1s'" >/dev/null

run() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 "$@"; }
value() { run -At -F ' ' -c "$1"; }

if [ "$source_kind" = kafka ]; then
	# The broker: a child of this script (it stops by itself if the script dies).
	trib_kafka_mock_start "$tmp/kafka" 10 --brokers 1 --topic orders:4 ||
		fail "the local Kafka broker did not start"

	echo "== tributary demo: a private cluster on $PGHOST, port $PGPORT;"
	echo "   a local Kafka broker at $bootstrap (pid $broker_pid), topic orders with 4 partitions"
else
	# redis-server: a child of this script on a free loopback port, nothing saved to disk.
	trib_redis_start "$tmp/redis" || fail "redis-server did not start"
	rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
	redis_url="redis://127.0.0.1:$redis_port"
	rkeys='"orders:0", "orders:1", "orders:2", "orders:3"'

	echo "== tributary demo: a private cluster on $PGHOST, port $PGPORT;"
	echo "   redis-server $(rcli INFO server | sed -n 's/^redis_version:\([^\r]*\).*/\1/p')" \
		"at $redis_url (pid $redis_pid), stream keys orders:0 .. orders:3"
fi

echo
echo "== the target table, and 5000 sample order events"
run <<'SQL'
CREATE EXTENSION tributary;

CREATE TABLE orders (
    order_id   bigint PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(12,2) NOT NULL CHECK (amount > 0),
    currency   text NOT NULL DEFAULT 'EUR',
    placed_at  timestamptz NOT NULL,
    items      text[],
    extra      jsonb,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

-- 5000 sample events, keyed by customer. Every 97th is not JSON, every 89th has a negative
-- amount, every 83rd has no customer, every 79th has an unreadable timestamp, every 73rd
-- repeats the previous order_id if that one is good (same customer, so the same partition:
-- the repeat is the one that fails). The rest are good; some carry keys the table does not
-- have.
CREATE SCHEMA demo;
CREATE TABLE demo.sample AS
SELECT i, kind, 'c' || CASE WHEN kind = 'duplicate order_id' THEN (i - 1) % 50 ELSE i % 50 END AS key,
       CASE kind
       WHEN 'not JSON' THEN '{"order_id": ' || i || ', "customer": "c' || i % 50 || '", broken'
       WHEN 'negative amount' THEN json_build_object('order_id', i, 'customer', 'c' || i % 50,
                                'amount', -5, 'placed_at', '2026-11-23T10:00:00Z')::text
       WHEN 'no customer' THEN json_build_object('order_id', i, 'amount', 10,
                                'placed_at', '2026-11-23T10:00:00Z')::text
       WHEN 'bad timestamp' THEN json_build_object('order_id', i, 'customer', 'c' || i % 50,
                                'amount', 10, 'placed_at', 'yesterday-ish')::text
       WHEN 'duplicate order_id' THEN json_build_object('order_id', i - 1, 'customer', 'c' || (i - 1) % 50,
                                'amount', 10, 'placed_at', '2026-11-23T10:00:00Z')::text
       ELSE json_strip_nulls(json_build_object('order_id', i, 'customer', 'c' || i % 50,
                              'amount', round((i % 1000) / 7.0 + 1, 2),
                              'currency', CASE WHEN i % 3 = 0 THEN 'USD' END,
                              'placed_at', timestamptz '2026-11-23 08:00+00' + i * interval '1 second',
                              'items', json_build_array('sku-' || i % 17, 'sku-' || i % 5),
                              'channel', CASE WHEN i % 2 = 0 THEN 'web' ELSE 'app' END))::text
       END AS payload
FROM generate_series(1, 5000) AS i,
     LATERAL (SELECT CASE WHEN i % 97 = 0 THEN 'not JSON'
                          WHEN i % 89 = 0 THEN 'negative amount'
                          WHEN i % 83 = 0 THEN 'no customer'
                          WHEN i % 79 = 0 THEN 'bad timestamp'
                          WHEN i % 73 = 0 AND (i - 1) % 97 <> 0 AND (i - 1) % 89 <> 0
                               AND (i - 1) % 83 <> 0 AND (i - 1) % 79 <> 0 THEN 'duplicate order_id'
                          ELSE 'good' END AS kind) AS k;
SQL
run -c "SELECT kind AS produced, count(*) AS messages FROM demo.sample
        GROUP BY kind ORDER BY kind = 'good' DESC, kind"

if [ "$source_kind" = kafka ]; then
# Export as KEY \x1f VALUE, one message after another separated by \x1e (bytes no message
# holds), and produce them all with one kcat run; kcat's partitioner spreads the keys.
msgs="$(run -At -F $'\x1f' -R $'\x1e' -c "SELECT key, payload FROM demo.sample ORDER BY i")"
printf '%s' "$msgs" >"$tmp/kafka/orders.msgs"
unset msgs
n="$(awk -v RS=$'\x1e' 'END { print NR }' "$tmp/kafka/orders.msgs")"
[ "$n" = 5000 ] || fail "expected 5000 messages to produce, the export holds $n"
t0=$SECONDS
kcat -P -b "$bootstrap" -t orders -D $'\x1e' -K $'\x1f' -X linger.ms=5 \
	-X message.timeout.ms=15000 <"$tmp/kafka/orders.msgs" 2>"$tmp/kafka/kcat.err" ||
	fail "kcat could not produce to $bootstrap: $(cat "$tmp/kafka/kcat.err")"
echo "produced $n messages with kcat -P in $((SECONDS - t0)) s; on the broker, per partition:"
kcat -C -b "$bootstrap" -t orders -o beginning -e -q -f '%p\n' 2>"$tmp/kafka/kcat.err" |
	sort -n | uniq -c | awk '{ printf "  partition %s: %s messages\n", $2, $1 }' ||
	fail "kcat could not consume from $bootstrap: $(cat "$tmp/kafka/kcat.err")"
else
# The same messages as entries `XADD orders:<customer number % 4> * customer <key> payload
# <message>`, in the order of the sample: the commands in Redis's protocol (RESP), one
# redis-cli --pipe for all of them.
run -At >"$tmp/redis/orders.resp" <<'SQL'
SELECT string_agg(format(E'*7\r\n$4\r\nXADD\r\n$%s\r\n%s\r\n$1\r\n*\r\n$8\r\ncustomer\r\n$%s\r\n%s\r\n$7\r\npayload\r\n$%s\r\n%s\r\n',
                         octet_length(rkey), rkey, octet_length(key), key, octet_length(payload), payload), ''
                  ORDER BY i)
FROM (SELECT i, key, payload, 'orders:' || substr(key, 2)::int % 4 AS rkey FROM demo.sample) AS s
SQL
truncate -s -1 "$tmp/redis/orders.resp"	# psql's newline after the one value
n=5000
t0=$SECONDS
rcli --pipe <"$tmp/redis/orders.resp" >"$tmp/redis/pipe.out" 2>&1 ||
	fail "redis-cli --pipe failed: $(tail -n 3 "$tmp/redis/pipe.out")"
grep -q "errors: 0, replies: $n" "$tmp/redis/pipe.out" ||
	fail "redis-cli --pipe: $(tail -n 1 "$tmp/redis/pipe.out")"
echo "added $n entries with one redis-cli --pipe in $((SECONDS - t0)) s; per key (XLEN):"
for k in 0 1 2 3; do echo "  orders:$k: $(rcli XLEN "orders:$k") entries"; done
echo "  the first entry of orders:1 (XRANGE orders:1 - + COUNT 1):"
rcli XRANGE orders:1 - + COUNT 1 | sed 's/^/     /'
fi

echo
if [ "$source_kind" = kafka ]; then
	echo "== declare the stream: source kafka, from the start of the topic"
	stream_source=kafka
	stream_options="{\"brokers\": \"$bootstrap\", \"topic\": \"orders\", \"format\": \"json\",
                    \"overflow\": \"extra\", \"batch_size\": 500}"
else
	echo "== declare the stream: source redis, the message in field payload, from the first entry of each key"
	stream_source=redis
	stream_options="{\"url\": \"$redis_url\", \"stream\": [$rkeys], \"fields\": \"payload\",
                    \"format\": \"json\", \"overflow\": \"extra\", \"batch_size\": 500}"
fi
run >/dev/null -c "SELECT tributary.create_stream(
    name       => 'orders',
    target     => 'orders',
    source     => '$stream_source',
    options    => '$stream_options',
    key        => 'customer',
    event_time => 'placed_at');
  SELECT tributary.set_quality('orders', '10 minutes', allowed_lateness => '20 minutes',
                               columns => '{customer,amount,currency,items}', key_column => 'order_id')"
run -c "SELECT name, source, target, options, key_column, event_time_column FROM tributary.streams"

echo "waiting for the stream's worker to consume all $n messages (at most ${DEMO_WAIT:-60} s):"
t0=$SECONDS
last=""
while :; do
	state="$(value "SELECT concat_ws(' ',
	                       (SELECT count(*) FROM orders),
	                       (SELECT count(*) FROM tributary.dead_letters WHERE stream = 'orders'),
	                       $([ "$source_kind" = kafka ] &&
		echo "(SELECT coalesce(sum(next_offset), 0) FROM tributary.kafka_offsets WHERE stream = 'orders')," ||
		echo "(SELECT coalesce(sum(messages), 0) FROM tributary.stream_stats WHERE stream = 'orders' AND topic IS NOT NULL),")
	                       (SELECT coalesce(state, '?') FROM tributary.streams WHERE name = 'orders'))")"
	read -r rows dead offs st <<<"$state"
	if [ "$state" != "$last" ]; then
		printf '  %3d s  %-8s rows %5d  dead letters %4d  %s %5d\n' \
			$((SECONDS - t0)) "$st" "$rows" "$dead" \
			"$([ "$source_kind" = kafka ] && echo offsets || echo "entries stored")" "$offs"
		last="$state"
	fi
	if [ $((rows + dead)) -ge "$n" ] && [ "$offs" -ge "$n" ]; then
		break
	fi
	if [ $((SECONDS - t0)) -ge "${DEMO_WAIT:-60}" ]; then
		run -c "SELECT name, state, worker_pid, last_error FROM tributary.streams" >&2 || true
		fail "the stream did not catch up within ${DEMO_WAIT:-60} s ($rows rows + $dead dead letters of $n messages)"
	fi
	sleep 0.5
done
[ $((rows + dead)) -eq "$n" ] || fail "$rows rows + $dead dead letters is not $n messages"
echo "all $n messages accounted for in $((SECONDS - t0)) s: $rows rows + $dead dead letters"

echo
echo "== rows in the target table"
run -c "SELECT count(*) AS rows, count(DISTINCT customer) AS customers, sum(amount) AS total,
               count(*) FILTER (WHERE currency = 'EUR') AS eur_by_default,
               count(*) FILTER (WHERE extra ? 'channel') AS with_overflow
        FROM orders"
run -c "SELECT order_id, customer, amount, currency, placed_at, items, extra
        FROM orders ORDER BY order_id LIMIT 3"

echo "== dead letters, by error"
run -c "SELECT sqlstate, error, count(*) AS messages FROM tributary.dead_letters
        WHERE stream = 'orders' GROUP BY sqlstate, error ORDER BY count(*) DESC, error"
if [ "$source_kind" = kafka ]; then
echo "   one of each kind, with its source position (from several partitions):"
run -c "SELECT source_stream, source_partition, source_position, sqlstate,
               left(convert_from(payload, 'UTF8'), 56) AS payload
        FROM (SELECT *, dense_rank() OVER (ORDER BY sqlstate) AS kind,
                     row_number() OVER (PARTITION BY sqlstate, source_partition
                                        ORDER BY source_position::bigint) AS nth
              FROM tributary.dead_letters WHERE stream = 'orders') AS d
        WHERE nth = 1 AND source_partition = (kind % 4)::text ORDER BY sqlstate"
read -r p o <<<"$(value "SELECT source_partition, source_position FROM tributary.dead_letters
                         WHERE stream = 'orders' AND sqlstate = '22P02' ORDER BY id LIMIT 1")"
echo "   the broker's message at partition $p, offset $o (kcat -C -p $p -o $o -c 1):"
kcat -C -b "$bootstrap" -t orders -p "$p" -o "$o" -c 1 -e -q -f '     key %k: %s\n' 2>"$tmp/kafka/kcat.err" ||
	fail "kcat could not consume from $bootstrap: $(cat "$tmp/kafka/kcat.err")"
echo

echo "== tributary.kafka_offsets: the next offset per partition, committed with the rows"
run -c "SELECT topic, partition, next_offset FROM tributary.kafka_offsets
        WHERE stream = 'orders' ORDER BY topic, partition"
run -c "SELECT sum(next_offset) AS total FROM tributary.kafka_offsets WHERE stream = 'orders'"

echo "== tributary.stream_stats"
run -c "SELECT stream, worker_pid IS NOT NULL AS worker, messages, rows, dead_letters, bytes, batches
        FROM tributary.stream_stats"
else
echo "   one of each kind, with its source position (the key and the entry id):"
run -c "SELECT DISTINCT ON (sqlstate) source_stream, source_partition, source_position, sqlstate,
               left(convert_from(payload, 'UTF8'), 56) AS payload
        FROM tributary.dead_letters WHERE stream = 'orders' ORDER BY sqlstate, id"
read -r k id <<<"$(value "SELECT source_stream, source_position FROM tributary.dead_letters
                          WHERE stream = 'orders' AND sqlstate = '22P02' ORDER BY id LIMIT 1")"
echo "   the entry $id of key $k on redis-server (XRANGE $k $id $id):"
rcli XRANGE "$k" "$id" "$id" | sed 's/^/     /'
echo

echo "== tributary.offsets: the last entry id stored per key, committed with the rows"
run -c "SELECT source_stream, source_partition, position FROM tributary.offsets
        WHERE stream = 'orders' ORDER BY source_stream"
echo "   on redis-server, per key: its last entry id, and the stream's consumer group (XINFO GROUPS):"
for k in 0 1 2 3; do
	last="$(rcli XINFO STREAM "orders:$k" | sed -n '/^last-generated-id$/{n;p}')"
	rcli XINFO GROUPS "orders:$k" | awk -v k="orders:$k" -v last="$last" '
		{ v[prev] = $0; prev = $0 }
		END { printf "     %s: last id %s; group %s: consumers %s, pending %s, last delivered %s, lag %s\n",
		             k, last, v["name"], v["consumers"], v["pending"], v["last-delivered-id"], v["lag"] }'
done

echo "== tributary.stream_stats: the stream, and each key"
run -c "SELECT stream, topic, worker_pid IS NOT NULL AS worker, messages, rows, dead_letters, bytes, batches, lag
        FROM tributary.stream_stats ORDER BY topic NULLS FIRST"
fi
echo "== tributary.streams"
run -c "SELECT name, source, state, last_error FROM tributary.streams"

echo "== the negative amounts were refunds after all: relax the CHECK and replay"
run -c "ALTER TABLE orders DROP CONSTRAINT orders_amount_check"
run -c "SELECT * FROM tributary.replay_dead_letters('orders')"
run -c "SELECT sqlstate, count(*) AS still_dead, max(attempts) AS attempts FROM tributary.dead_letters
        WHERE stream = 'orders' GROUP BY sqlstate ORDER BY sqlstate"
run -c "SELECT count(*) AS rows, count(*) FILTER (WHERE amount < 0) AS refunds FROM orders"

echo "== quality windows of the $([ "$source_kind" = kafka ] && echo Kafka || echo Redis) stream (10 minutes of placed_at; dead letters lower validity)"
run -c "SELECT window_start, rows, duplicates, round(completeness::numeric, 3) AS completeness,
               dead_letters, round(validity::numeric, 3) AS validity, late_rows,
               round(quality_score::numeric, 3) AS score
        FROM tributary.quality_windows WHERE stream = 'orders' ORDER BY window_start LIMIT 5"
echo "   the same windows computed afterwards over the table (window_quality):"
run -c "SELECT window_start, rows, duplicates, round(completeness::numeric, 3) AS completeness
        FROM tributary.window_quality('orders', 'placed_at', '10 minutes',
                                      columns => '{customer,amount,currency,items}', key_column => 'order_id')
        ORDER BY window_start LIMIT 5"

echo "== live quality windows, an alert and its recovery: a local stream of sensor readings"
run >/dev/null <<'SQL'
CREATE TABLE readings (id bigint, at timestamptz, device text, temp float8);
SELECT tributary.create_stream('sensor', 'readings', 'local', '{"format": "json"}',
                               key => 'id', event_time => 'at');
CREATE TABLE demo.pages (alert jsonb, paged_at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION demo.page(alert jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO demo.pages (alert) VALUES (alert) $$;
SELECT tributary.set_quality('sensor', '10 seconds', columns => '{device,temp}',
                             thresholds => '{"quality_score": 0.9, "columns": {"temp": {"max": 60}}}',
                             on_alert => 'demo.page(jsonb)');
SQL
# Six windows of 40 readings each; the third is a burst of bad data: missing devices,
# repeated ids, a sensor reading 900 degrees.
for w in 0 1 2 3 4 5; do
	run >/dev/null -c "SELECT tributary.ingest('sensor', ARRAY(
	    SELECT json_build_object(
	        'id', CASE WHEN $w = 2 AND i % 4 = 0 THEN $w * 100 + 1 ELSE $w * 100 + i END,
	        'at', timestamptz '2026-11-23 09:00:00+00' + ($w * 10 + i / 4.0) * interval '1 second',
	        'device', CASE WHEN $w = 2 AND i % 3 = 0 THEN NULL ELSE 'd' || i % 5 END,
	        'temp', CASE WHEN $w = 2 AND i = 7 THEN 900 ELSE 20 + i % 7 END)::text
	    FROM generate_series(0, 39) i))"
	echo "   after window $w's readings, the open window (tributary.quality_now):"
	run -c "SELECT window_start, rows, duplicates, round(completeness::numeric, 3) AS completeness,
	               round(quality_score::numeric, 3) AS score FROM tributary.quality_now('sensor')"
done
echo "   the closed windows (tributary.quality_windows):"
run -c "SELECT window_start, rows, duplicates, round(completeness::numeric, 3) AS completeness,
               outliers, round(quality_score::numeric, 3) AS score
        FROM tributary.quality_windows WHERE stream = 'sensor' ORDER BY window_start"
run -c "SELECT window_start, column_name, non_null, distinct_count, round(mean::numeric, 2) AS mean,
               min, max, p50, p99
        FROM tributary.quality_columns WHERE stream = 'sensor' AND window_start = '2026-11-23 09:00:20+00'
        ORDER BY column_name"
echo "   alerts (tributary.alerts, also sent with NOTIFY on tributary.alerts) and the pages the handler wrote:"
run -c "SELECT window_start, kind, round(quality_score::numeric, 3) AS score, failed
        FROM tributary.alerts WHERE stream = 'sensor' ORDER BY id"
run -c "SELECT alert ->> 'kind' AS kind, alert ->> 'window_start' AS window_start FROM demo.pages ORDER BY paged_at"

echo "== snapshots and fan-out: the latest order per customer, and a listener following one"
# From here on the orders stream keeps each customer's latest order and notifies changes.
# tributary-listen LISTENs, reads the snapshot, then follows: one JSON line per event.
run >/dev/null -c "SELECT tributary.set_snapshot('orders');
                   SELECT tributary.set_fanout('orders', heartbeat => '2 seconds')"
listen_bin="$(trib_pg_bindir)/tributary-listen"
[ -x "$listen_bin" ] || fail "tributary-listen is not installed in $(trib_pg_bindir)"
trib_as_user "$listen_bin" -d "host=$PGHOST port=$PGPORT dbname=postgres application_name=demo-listener" \
	--stream orders --key c7 --idle-exit 4 >"$tmp/listen.out" 2>"$tmp/listen.err" &
listen_pid=$!	# trib_as_user's subshell: the client exits by itself 4 s after its last event
for _ in $(seq 100); do grep -q '"event":"hydrate' "$tmp/listen.out" && break; sleep 0.1; done
grep -q '"event":"hydrate' "$tmp/listen.out" || fail "tributary-listen did not hydrate: $(cat "$tmp/listen.err")"
# three new orders of customer c7 and one of c8; then a tombstone (a NULL value) for c7
if [ "$source_kind" = kafka ]; then
produce() {
	printf '%b' "$@" | kcat -P -b "$bootstrap" -t orders -D $'\x1e' -K $'\x1f' -Z 2>"$tmp/kafka/kcat.err" ||
		fail "kcat could not produce to $bootstrap: $(cat "$tmp/kafka/kcat.err")"
}
produce 'c7\x1f{"order_id": 900001, "customer": "c7", "amount": 10, "placed_at": "2026-11-23T12:00:00Z"}\x1e' \
	'c8\x1f{"order_id": 900002, "customer": "c8", "amount": 11, "placed_at": "2026-11-23T12:00:01Z"}\x1e' \
	'c7\x1f{"order_id": 900003, "customer": "c7", "amount": 12, "placed_at": "2026-11-23T12:00:02Z"}\x1e' \
	'c7\x1f{"order_id": 900004, "customer": "c7", "amount": 13, "placed_at": "2026-11-23T12:00:03Z"}\x1e'
else
xadd() {	# customer, message: to key orders:<customer number % 4>
	rcli XADD "orders:$((${1#c} % 4))" '*' customer "$1" payload "$2" >/dev/null ||
		fail "XADD to redis-server failed"
}
xadd c7 '{"order_id": 900001, "customer": "c7", "amount": 10, "placed_at": "2026-11-23T12:00:00Z"}'
xadd c8 '{"order_id": 900002, "customer": "c8", "amount": 11, "placed_at": "2026-11-23T12:00:01Z"}'
xadd c7 '{"order_id": 900003, "customer": "c7", "amount": 12, "placed_at": "2026-11-23T12:00:02Z"}'
xadd c7 '{"order_id": 900004, "customer": "c7", "amount": 13, "placed_at": "2026-11-23T12:00:03Z"}'
fi
for _ in $(seq 150); do grep -q '900004' "$tmp/listen.out" && break; sleep 0.1; done
grep -q '900004' "$tmp/listen.out" || fail "tributary-listen did not see order 900004: $(cat "$tmp/listen.err")"
run -c "SELECT key, seq, record ->> 'order_id' AS order_id, record ->> 'amount' AS amount, stream_seq
        FROM tributary.snapshot('orders') ORDER BY seq"
if [ "$source_kind" = kafka ]; then
	produce 'c7\x1f\x1e'
else
	# A Redis entry has no form for "this key is gone": the tombstone goes through ingest,
	# which takes any stream's messages (a key and no payload).
	echo "   customer c7's tombstone, through tributary.ingest (a Redis entry has no tombstone form):"
	run -c "SELECT * FROM tributary.ingest('orders', ARRAY[NULL]::jsonb[], keys => ARRAY['c7'])"
fi
for _ in $(seq 150); do grep -q '"event":"delete"' "$tmp/listen.out" && break; sleep 0.1; done
wait "$listen_pid" || fail "tributary-listen failed: $(cat "$tmp/listen.err")"
echo "tributary-listen --stream orders --key c7 printed:"
sed 's/^/  /' "$tmp/listen.out"
run -c "SELECT key, seq, record IS NULL AS deleted FROM tributary.snapshots WHERE stream = 'orders' ORDER BY seq"

echo "== the same insert path without a broker: a local stream, fed by tributary.ingest"
run >/dev/null <<'SQL'
CREATE TABLE phone_orders (LIKE orders INCLUDING ALL);
SELECT tributary.create_stream('phone_orders', 'phone_orders', 'local',
                               '{"format": "json", "overflow": "extra"}',
                               key => 'customer', event_time => 'placed_at');
SQL
run <<'SQL'
SELECT * FROM tributary.ingest('phone_orders', ARRAY[
    '{"order_id": 1, "customer": "ann", "amount": 12.5, "placed_at": "2026-11-23T10:00:00Z", "operator": "tom"}',
    '{"order_id": 2, "customer": "bob", "amount": 7, "currency": "USD", "placed_at": "2026-11-23T10:05:00Z"}',
    '{"order_id": 3, "customer": "cyd", "amount": -3, "placed_at": "2026-11-23T10:07:00Z"}',
    '{"order_id": 4, "customer": "dee", "amount": 30}',
    'call me back']);
SQL
run -c "SELECT order_id, customer, amount, currency, placed_at, extra FROM phone_orders ORDER BY order_id"
run -c "SELECT source_stream, source_partition, source_position, sqlstate, error FROM tributary.dead_letters
        WHERE stream = 'phone_orders' ORDER BY id"
run -c "SELECT name, source, state, last_error FROM tributary.streams ORDER BY name"
echo "== done in $((SECONDS - started)) s"
