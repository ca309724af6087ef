#!/usr/bin/env bash
# make demo: tributary on embedded defaults.
#
# Starts a private throwaway PostgreSQL cluster with tributary preloaded, declares a
# `local` stream into a typed table, pushes 5000 sample order events through
# tributary.ingest in batches (about 3% of them malformed in different ways), and prints
# what landed: rows, dead letters with their errors, and tributary.stream_stats. Then it
# fixes the cause of one kind of failure and replays the dead letters.
#
# Everything runs on this machine; the cluster is removed on exit (KEEP_TMP=1 keeps it).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh

bash tools/bootstrap.sh
make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-demo.XXXXXX")"
cleanup() {
	trib_cluster_stop "$tmp" || true
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "demo cluster kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trib_cluster_start "$tmp" "tributary.database = 'postgres'" >/dev/null

run() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== tributary demo: a private cluster on $PGHOST, port $PGPORT"
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

SELECT tributary.create_stream(
    name       => 'orders',
    target     => 'orders',
    source     => 'local',
    options    => '{"format": "json", "overflow": "extra", "batch_size": 500}',
    key        => 'customer',
    event_time => 'placed_at');

-- 5000 sample events. Every 97th is not JSON, every 89th has a negative amount, every
-- 83rd has no customer, every 79th has an unreadable timestamp, every 73rd repeats an
-- earlier order_id. The rest are good; some carry keys the table does not have.
CREATE TEMP TABLE sample AS
SELECT i, CASE
    WHEN i % 97 = 0 THEN '{"order_id": ' || i || ', "customer": "c' || i % 50 || '", broken'
    WHEN i % 89 = 0 THEN json_build_object('order_id', i, 'customer', 'c' || i % 50,
                            'amount', -5, 'placed_at', '2026-11-23T10:00:00Z')::text
    WHEN i % 83 = 0 THEN json_build_object('order_id', i, 'amount', 10,
                            'placed_at', '2026-11-23T10:00:00Z')::text
    WHEN i % 79 = 0 THEN json_build_object('order_id', i, 'customer', 'c' || i % 50,
                            'amount', 10, 'placed_at', 'yesterday-ish')::text
    WHEN i % 73 = 0 THEN json_build_object('order_id', i - 1, 'customer', 'c' || i % 50,
                            'amount', 10, 'placed_at', '2026-11-23T10:00:00Z')::text
    ELSE json_strip_nulls(json_build_object('order_id', i, 'customer', 'c' || i % 50,
                           'amount', round((i % 1000) / 7.0 + 1, 2),
                           'currency', CASE WHEN i % 3 = 0 THEN 'USD' END,
                           'placed_at', timestamptz '2026-11-23 08:00+00' + i * interval '1 second',
                           'items', json_build_array('sku-' || i % 17, 'sku-' || i % 5),
                           'channel', CASE WHEN i % 2 = 0 THEN 'web' ELSE 'app' END))::text
    END AS payload
FROM generate_series(1, 5000) AS i;

-- push them through the same path a broker's messages take, 500 per call
-- (a key missing from a message gets the column's default: currency is 'EUR' then)
SELECT sum(r.accepted) AS accepted, sum(r.dead_lettered) AS dead_lettered
FROM (SELECT array_agg(payload ORDER BY i) AS payloads
      FROM sample GROUP BY (i - 1) / 500) AS batches,
     LATERAL tributary.ingest('orders', batches.payloads) AS r;
SQL

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
        GROUP BY sqlstate, error ORDER BY count(*) DESC, error"
run -c "SELECT id, sqlstate, left(convert_from(payload, 'UTF8'), 60) AS payload, detail
        FROM tributary.dead_letters ORDER BY id LIMIT 5"

echo "== tributary.stream_stats"
run -c "SELECT stream, messages, rows, dead_letters, bytes, batches FROM tributary.stream_stats"

echo "== the negative amounts were refunds after all: relax the CHECK and replay"
run -c "ALTER TABLE orders DROP CONSTRAINT orders_amount_check"
run -c "SELECT * FROM tributary.replay_dead_letters('orders')"
run -c "SELECT sqlstate, count(*) AS still_dead FROM tributary.dead_letters GROUP BY sqlstate ORDER BY sqlstate"
run -c "SELECT stream, messages, rows, dead_letters, batches FROM tributary.stream_stats"
echo "== done"
