#!/usr/bin/env bash
# bench/ingest_local.sh: rows/s of the local ingest path against raw COPY.
#
# On a private throwaway cluster, N JSON messages (~100 bytes, 5 fields) are stored as text;
# then each contender loads the same rows into the same typed table
#   (id bigint, name text, at timestamptz, value float8, tag text):
#   copy_csv       COPY FROM a CSV file of the rows (the limit: one backend parsing)
#   ingest         tributary.ingest(name, text[]) in batches of BATCH messages, in one statement
#   ingest_tx      the same, each batch in its own transaction, as a stream worker commits
#   populate       INSERT ... SELECT jsonb_populate_record(...) (what one writes in SQL)
# Each is run RUNS times on a truncated table; the best time is reported.
# Usage: bench/ingest_local.sh [N=1000000] [BATCH=10000] [RUNS=3]
# QUALITY=1: the stream keeps continuous quality windows (one-minute windows over at,
# duplicates by id, every column watched), to measure what they cost.
# SNAPSHOT=1: the stream keeps a snapshot per key; SNAPSHOT_KEY is its key column (default
# name: 10000 keys, each once per batch of 10000), FANOUT=1 also notifies every change
# (channels '{stream,key}', nobody listening), to measure what they cost (docs/fanout.md).
# PERF=1: one more ingest pass, not counted, under perf record -g on its backend; prints the
# top symbols by self time.
set -euo pipefail

n="${1:-1000000}"
batch="${2:-10000}"
runs="${3:-3}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh

make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-bench.XXXXXX")"
trap 'trib_cluster_stop "$tmp" || true; rm -rf "$tmp"' EXIT
trib_cluster_start "$tmp" "tributary.database = 'postgres'" "shared_buffers = '1GB'" \
	"max_wal_size = '8GB'" "checkpoint_timeout = '30min'" "synchronous_commit = off" >/dev/null
sql() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

sql <<SQL
CREATE EXTENSION tributary;
CREATE TABLE target (id bigint, name text, at timestamptz, value float8, tag text);
CREATE UNLOGGED TABLE messages AS
SELECT i, json_build_object('id', i, 'name', 'user-' || (i % 10000),
       'at', timestamptz '2026-11-23 00:00+00' + i * interval '1 millisecond',
       'value', (i % 1000) / 7.0, 'tag', 'tag-' || (i % 37))::text AS payload
FROM generate_series(1, $n) AS i;
-- stored uncompressed, so the timing is ingest's, not pglz's
CREATE UNLOGGED TABLE batches (b int, payloads text[]);
ALTER TABLE batches ALTER payloads SET STORAGE EXTERNAL;
INSERT INTO batches
SELECT (i - 1) / $batch, array_agg(payload ORDER BY i) FROM messages GROUP BY 1;
SELECT tributary.create_stream('bench', 'target', 'local', '{"format": "json"}',
                               key => '${SNAPSHOT_KEY:-name}', event_time => 'at');
SELECT tributary.set_quality('bench', '1 minute', key_column => 'id') WHERE ${QUALITY:-0} = 1;
SELECT tributary.set_snapshot('bench') WHERE ${SNAPSHOT:-0} = 1;
SELECT tributary.set_fanout('bench') WHERE ${FANOUT:-0} = 1;
COPY (SELECT (payload::jsonb ->> 'id')::bigint, payload::jsonb ->> 'name',
             (payload::jsonb ->> 'at')::timestamptz, (payload::jsonb ->> 'value')::float8,
             payload::jsonb ->> 'tag' FROM messages ORDER BY i)
  TO '$tmp/rows.csv' WITH (FORMAT csv);
CHECKPOINT;
SQL
echo "messages: $n, avg payload bytes: $(sql -c 'SELECT round(avg(length(payload))) FROM messages')"

best() {	# name, SQL to time; prints the best rows/s over the runs
	local name="$1" body="$2" best_ms="" ms
	for _ in $(seq "$runs"); do
		sql -c "TRUNCATE target" -c "CHECKPOINT" >/dev/null
		ms="$(sql <<SQL
SELECT clock_timestamp() AS t0 \gset
$body
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
SQL
)"
		ms="$(tail -n 1 <<<"$ms")"
		if [ -z "$best_ms" ] || [ "$ms" -lt "$best_ms" ]; then best_ms="$ms"; fi
	done
	rows="$(sql -c 'SELECT count(*) FROM target')"
	[ "$rows" = "$n" ] || { echo "$name: stored $rows rows, expected $n" >&2; exit 1; }
	printf '%-10s %8d ms  %10d rows/s\n' "$name" "$best_ms" "$((n * 1000 / best_ms))"
}

best copy_csv "COPY target FROM '$tmp/rows.csv' WITH (FORMAT csv);"
best ingest "SELECT sum(r.accepted) FROM batches, LATERAL tributary.ingest('bench', payloads) r;"
best ingest_tx "DO \$\$ DECLARE p text[]; BEGIN FOR p IN SELECT payloads FROM batches ORDER BY b LOOP
	PERFORM tributary.ingest('bench', p); COMMIT; END LOOP; END \$\$;"
best populate "INSERT INTO target SELECT r.* FROM messages, LATERAL jsonb_populate_record(NULL::target, payload::jsonb) r;"

if [ "${PERF:-0}" = 1 ]; then
	sql -c "TRUNCATE target" -c "CHECKPOINT" >/dev/null
	sql -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(1)" \
		-c "SELECT sum(r.accepted) FROM batches, LATERAL tributary.ingest('bench', payloads) r" \
		>"$tmp/perf.out" &
	psql_pid=$!
	until [ -s "$tmp/perf.out" ]; do sleep 0.05; done
	perf record -g -p "$(head -n 1 "$tmp/perf.out")" -o "$tmp/perf.data" >"$tmp/perf.log" 2>&1 &
	perf_pid=$!
	wait "$psql_pid"
	kill -INT "$perf_pid" 2>/dev/null || true
	wait "$perf_pid" 2>/dev/null || true
	echo "ingest's backend, top symbols by self time:"
	perf report -i "$tmp/perf.data" --no-children -g none --stdio -F overhead,dso,sym \
		--percent-limit 0.8 2>/dev/null | grep '%' | grep -v '^#' | head -n 40
fi
