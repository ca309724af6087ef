#!/usr/bin/env bash
# bench/quality_adhoc.sh: window_quality and column_quality over a table, against a plain
# scan of the same columns and against the SQL one writes instead.
#
# On a private throwaway cluster, a table of N rows (ts timestamptz, device text, status
# text, value float8), about N/1000 one-minute windows, four watched columns (value,
# device, status, ts). Each contender runs RUNS times; the best is reported:
#   scan            select sum(value), count(device), count(status), max(ts), serially
#                   (max_parallel_workers_per_gather = 0): the limit the issue names
#   window_quality  tributary.window_quality(t, 'ts', '1 minute', columns => the four)
#   column_quality  tributary.column_quality(the same)
#   wq_serial, cq_serial  the same two without parallel workers
#                   (max_parallel_workers_per_gather = 0; for the record, not a target)
#   exact_sql       date_bin, count(*) filter, avg, stddev, percentile_cont,
#                   count(distinct): the exact hand-written query
#   hll_tdigest     the same with the hll and tdigest extensions (when installed; bench-only
#                   dependencies: postgresql-15-hll, postgresql-15-tdigest)
# The tributary functions run with the server's default parallel settings.
# Usage: bench/quality_adhoc.sh [N=1000000] [RUNS=3]
# Run by hand; tests never run it, and nothing here asserts on timing.
set -euo pipefail

n="${1:-1000000}"
runs="${2:-3}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh

make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-qbench.XXXXXX")"
trap 'trib_cluster_stop "$tmp" || true; rm -rf "$tmp"' EXIT
trib_cluster_start "$tmp" "tributary.database = 'postgres'" "shared_buffers = '1GB'" \
	"max_wal_size = '8GB'" "checkpoint_timeout = '30min'" "work_mem = '64MB'" >/dev/null
sql() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

have_peers=0
sql -c "CREATE EXTENSION tributary"
if sql -c "CREATE EXTENSION hll" -c "CREATE EXTENSION tdigest" 2>/dev/null; then have_peers=1; fi

sql <<SQL
CREATE TABLE t AS
SELECT timestamptz '2026-11-23 00:00+00' + i * (interval '60 s' / 1000) AS ts,
       'device-' || (i::bigint * 7919 % 5000) AS device,
       CASE WHEN i % 50 = 0 THEN NULL WHEN i % 7 = 0 THEN 'warn' ELSE 'ok' END AS status,
       CASE WHEN i % 97 = 0 THEN NULL ELSE 20 + 5 * sin(i / 1000.0) + (i * 31 % 1000) / 100.0 END AS value
FROM generate_series(1, $n) AS i;
VACUUM ANALYZE t;
SQL
echo "rows: $n, windows: $(sql -c "SELECT count(DISTINCT date_bin('1 minute', ts, '1970-01-01')) FROM t")," \
	"table $(sql -c "SELECT pg_size_pretty(pg_table_size('t'))")"

best() {	# name, SQL; prints the best time over the runs
	local name="$1" body="$2" best_ms="" ms
	for _ in $(seq "$runs"); do
		ms="$(sql <<SQL
SELECT clock_timestamp() AS t0 \gset
$body
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
SQL
)"
		ms="$(echo "$ms" | tail -n 1)"
		if [ -z "$best_ms" ] || [ "$ms" -lt "$best_ms" ]; then best_ms="$ms"; fi
	done
	printf '%-16s %6d ms\n' "$name" "$best_ms"
	eval "ms_$name=$best_ms"
}

best scan "SET max_parallel_workers_per_gather = 0;
SELECT sum(value), count(device), count(status), max(ts) FROM t \\g /dev/null"
best window_quality "SELECT count(*) FROM tributary.window_quality('t', 'ts', '1 minute',
    columns => '{value,device,status,ts}') \\g /dev/null"
best column_quality "SELECT count(*) FROM tributary.column_quality('t', 'ts', '1 minute',
    columns => '{value,device,status,ts}') \\g /dev/null"
best wq_serial "SET max_parallel_workers_per_gather = 0;
SELECT count(*) FROM tributary.window_quality('t', 'ts', '1 minute',
    columns => '{value,device,status,ts}') \\g /dev/null"
best cq_serial "SET max_parallel_workers_per_gather = 0;
SELECT count(*) FROM tributary.column_quality('t', 'ts', '1 minute',
    columns => '{value,device,status,ts}') \\g /dev/null"
best exact_sql "SELECT date_bin('1 minute', ts, '1970-01-01') AS w, count(*),
    count(*) FILTER (WHERE value IS NOT NULL), count(*) FILTER (WHERE device IS NOT NULL),
    count(*) FILTER (WHERE status IS NOT NULL), avg(value), stddev(value), min(value), max(value),
    percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY value),
    count(DISTINCT value), count(DISTINCT device), count(DISTINCT status), count(DISTINCT ts)
FROM t GROUP BY 1 \\g /dev/null"
if [ "$have_peers" = 1 ]; then
	best hll_tdigest "SELECT date_bin('1 minute', ts, '1970-01-01') AS w, count(*),
    count(*) FILTER (WHERE value IS NOT NULL), count(*) FILTER (WHERE device IS NOT NULL),
    count(*) FILTER (WHERE status IS NOT NULL), avg(value), stddev(value), min(value), max(value),
    tdigest_percentile(value, 100, ARRAY[0.5, 0.9, 0.99]),
    hll_cardinality(hll_add_agg(hll_hash_bigint(hashfloat8(value)))), hll_cardinality(hll_add_agg(hll_hash_text(device))),
    hll_cardinality(hll_add_agg(hll_hash_text(status))), hll_cardinality(hll_add_agg(hll_hash_bigint(extract(epoch FROM ts)::bigint)))
FROM t GROUP BY 1 \\g /dev/null"
fi

echo
awk -v s="$ms_scan" -v w="$ms_window_quality" -v c="$ms_column_quality" -v e="$ms_exact_sql" \
	-v h="${ms_hll_tdigest:-0}" -v ws="$ms_wq_serial" -v cs="$ms_cq_serial" 'BEGIN {
	printf "window_quality: %.2fx the scan (target <= 1.5x), %.1fx faster than exact SQL (>= 8x)", w / s, e / w
	if (h > 0) printf ", %.1fx faster than hll + tdigest (>= 4x)", h / w
	printf "\ncolumn_quality: %.2fx the scan, %.1fx faster than exact SQL", c / s, e / c
	if (h > 0) printf ", %.1fx faster than hll + tdigest", h / c
	printf "\nwithout workers: window_quality %.2fx the scan, column_quality %.2fx\n", ws / s, cs / s
}'
