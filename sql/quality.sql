--
-- quality: windowed quality metrics over any table (window_quality, column_quality) and
-- the window state aggregates under them (quality_state, quality_merge).
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET extra_float_digits = 0;

CREATE TABLE q_t (at timestamptz, id integer, device text, value float8, status text);
-- window 00:00: 4 rows, one whole-row duplicate (rows 1 and 2), ids 1, 1, 2, null
-- window 00:01: 3 rows, the first exactly on the edge; value and status partly null
-- window 00:02: none; window 00:03: 1 row
INSERT INTO q_t VALUES
    ('2026-01-01 00:00:10', 1, 'a', 1.0, 'ok'),
    ('2026-01-01 00:00:10', 1, 'a', 1.0, 'ok'),
    ('2026-01-01 00:00:20', 2, 'b', 3.0, 'ok'),
    ('2026-01-01 00:00:59.999999', NULL, 'c', 8.0, NULL),
    ('2026-01-01 00:01:00', 3, 'a', NULL, 'bad'),
    ('2026-01-01 00:01:30', 4, 'a', -2.5, NULL),
    ('2026-01-01 00:01:40', 5, NULL, 4.5, NULL),
    ('2026-01-01 00:03:00', 6, 'd', 100.0, 'ok'),
    (NULL, 7, 'z', 0, 'no time');

-- Tumbling minutes; no key: duplicates are whole rows. The empty minute is a window too.
SELECT window_start, window_end, rows, duplicates, round(completeness::numeric, 4) AS completeness,
       round(uniqueness::numeric, 4) AS uniqueness, validity, timeliness,
       round(consistency::numeric, 4) AS consistency, outliers,
       round(quality_score::numeric, 4) AS score, newest_event
FROM tributary.window_quality('q_t', 'at', '1 minute');

-- By key: the two rows with id 1 are one duplicate; a null key is never one.
SELECT window_start, rows, duplicates
FROM tributary.window_quality('q_t', 'at', '1 minute', key_column => 'id');

-- Per column: numeric metrics for value (and id), distinct counts for every column.
SELECT window_start, column_name, rows, non_null, round(completeness::numeric, 4) AS completeness,
       distinct_count, mean, round(stddev::numeric, 6) AS stddev, min, max, p50, p90, p99,
       outliers, outlier_rate
FROM tributary.column_quality('q_t', 'at', '1 minute', columns => '{value,status,id,at}')
ORDER BY window_start, column_name;

-- The same numbers as exact SQL (mean and stddev from exact sums, so equal to the last
-- bits of a correctly rounded result; distinct counts exact while small).
WITH exact AS (
    SELECT date_bin('1 minute', at, '1970-01-01') AS w, count(*) AS n, count(value) AS nn,
           avg(value) AS mean, stddev(value) AS sd, min(value) AS lo, max(value) AS hi,
           count(DISTINCT value) AS d
    FROM q_t WHERE at IS NOT NULL GROUP BY 1)
SELECT e.w, c.rows = e.n AS rows_ok, c.non_null = e.nn AS non_null_ok,
       c.mean = e.mean AS mean_ok, abs(c.stddev - e.sd) <= 1e-15 * e.sd AS stddev_ok,
       c.min = e.lo AND c.max = e.hi AS extremes_ok, c.distinct_count = e.d AS distinct_ok
FROM exact e JOIN tributary.column_quality('q_t', 'at', '1 minute', columns => '{value}') c
    ON c.window_start = e.w
ORDER BY 1;

-- Hopping: 2-minute windows every minute; a row is in both windows that cover it.
SELECT window_start, window_end, rows, duplicates
FROM tributary.window_quality('q_t', 'at', '2 minutes', slide => '1 minute');

-- "from" and "to" select rows and widen the windows to the range.
SELECT window_start, rows
FROM tributary.window_quality('q_t', 'at', '1 minute', "from" => '2026-01-01 00:00:20',
                              "to" => '2026-01-01 00:06');
-- A range with no rows: empty windows.
SELECT window_start, rows, quality_score
FROM tributary.window_quality('q_t', 'at', '1 minute', "from" => '2026-02-01',
                              "to" => '2026-02-01 00:02');
-- No rows and no range: no windows.
SELECT count(*) FROM tributary.window_quality('q_t', 'at', '1 minute', "to" => '2000-01-01');

-- origin shifts the edges, as date_bin's does.
SELECT window_start, rows
FROM tributary.window_quality('q_t', 'at', '1 minute', origin => '2026-01-01 00:00:30');

-- A timestamp (without time zone) column is read as UTC, whatever the session's zone.
CREATE TABLE q_ts (at timestamp, v integer);
INSERT INTO q_ts VALUES ('2026-01-01 10:00:05', 1), ('2026-01-01 10:00:55', 2), ('2026-01-01 10:01:00', 3);
SET TimeZone = 'America/New_York';
SELECT window_start AT TIME ZONE 'UTC' AS window_start_utc, rows
FROM tributary.window_quality('q_ts', 'at', '1 minute');
SET TimeZone = 'UTC';

-- Merging minute states gives the 2-minute state exactly (the same bytes).
WITH minutes AS (
    SELECT date_bin('1 minute', at, '1970-01-01') AS m,
           tributary.quality_state(at, q, id, device, value, status) AS st
    FROM q_t AS q WHERE at IS NOT NULL GROUP BY 1),
rolled AS (
    SELECT date_bin('2 minutes', m, '1970-01-01') AS w, tributary.quality_merge(st) AS st
    FROM minutes GROUP BY 1),
direct AS (
    SELECT date_bin('2 minutes', at, '1970-01-01') AS w,
           tributary.quality_state(at, q, id, device, value, status) AS st
    FROM q_t AS q WHERE at IS NOT NULL GROUP BY 1)
SELECT r.w, r.st = d.st AS same_state, length(r.st) > 0 AS has_bytes
FROM rolled r JOIN direct d USING (w) ORDER BY 1;

-- Bad calls fail before reading a row, and say what is wrong.
SELECT * FROM tributary.window_quality('q_t', 'at', '0 seconds');
SELECT * FROM tributary.window_quality('q_t', 'at', '-1 minute');
SELECT * FROM tributary.window_quality('q_t', 'at', '1 month');
SELECT * FROM tributary.window_quality('q_t', 'at', '1 minute', slide => '40 seconds');
SELECT * FROM tributary.window_quality('q_t', 'at', '1 minute', slide => '2 minutes');
SELECT * FROM tributary.window_quality('q_t', 'nope', '1 minute');
SELECT * FROM tributary.window_quality('q_t', 'xmin', '1 minute');
SELECT * FROM tributary.window_quality('q_t', 'id', '1 minute');
SELECT * FROM tributary.column_quality('q_t', 'at', '1 minute', columns => '{value,nope}');
SELECT * FROM tributary.column_quality('q_t', 'at', '1 minute', columns => '{value,ctid}');
SELECT * FROM tributary.column_quality('q_t', 'at', '1 minute', columns => '{value,value}');
SELECT * FROM tributary.column_quality('q_t', 'at', '1 minute', columns => '{}');
SELECT * FROM tributary.window_quality('q_t', 'at', '1 minute', key_column => 'nope');
SELECT * FROM tributary.window_quality('q_t', 'at', '1 minute', "from" => '2026-01-02', "to" => '2026-01-01');
SELECT * FROM tributary.window_quality('q_t', 'at', NULL);
SELECT * FROM tributary.window_quality('q_t', 'at', '1 second', "from" => '2000-01-01', "to" => '2026-01-01');
SELECT tributary.quality_merge(st) FROM (VALUES ('\x0102'::bytea)) v(st);

-- A table is read directly, by parallel workers and the leader when it is large enough;
-- a view (or a table with row-level security, inheritance children or partitions) goes
-- through a query the planner may run in parallel. All give the same windows, to the last
-- bit. q_shuf holds the same rows in another order, so its panes are split between the
-- parallel participants and merged.
CREATE TABLE q_big AS
SELECT timestamptz '2026-01-01' + (i / 50) * interval '1 s' AS at, i % 5000 AS id,
       'dev-' || (i % 97) AS device,
       CASE WHEN i % 11 = 0 THEN NULL ELSE ((i * 7919) % 10007) / 13.0 END AS value,
       CASE WHEN i % 3 = 0 THEN 'ok' ELSE 'late' END AS status
FROM generate_series(1, 200000) i;
ANALYZE q_big;
CREATE TABLE q_shuf AS SELECT * FROM q_big ORDER BY (id * 7919 + extract(epoch FROM at)::int) % 10007, at, id;
ANALYZE q_shuf;
CREATE VIEW q_big_v AS SELECT * FROM q_big;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE q_direct AS
SELECT * FROM tributary.column_quality('q_big', 'at', '1 minute', key_column => 'id');
CREATE TEMP TABLE q_direct_w AS
SELECT * FROM tributary.window_quality('q_big', 'at', '1 minute', slide => '30 seconds');
CREATE TEMP TABLE q_direct_r AS
SELECT * FROM tributary.window_quality('q_big', 'at', '2 minutes', slide => '20 seconds');
CREATE TEMP TABLE q_direct_t AS
SELECT * FROM tributary.window_quality('q_big', 'at', '1 minute');
RESET max_parallel_workers_per_gather;
SET parallel_setup_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
-- the direct read in parallel (the debug message says so), the same windows: tumbling
-- windows come mostly as the reports of the workers that had them alone (q_big, in time
-- order), or as states merged by the leader (q_shuf); hopping ones always as states
\set VERBOSITY terse
SET client_min_messages = debug1;
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_t s FULL JOIN tributary.window_quality('q_big', 'at', '1 minute') p
    USING (window_start);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_t s FULL JOIN tributary.window_quality('q_shuf', 'at', '1 minute') p
    USING (window_start);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct s FULL JOIN tributary.column_quality('q_big', 'at', '1 minute', key_column => 'id') p
    USING (window_start, column_name);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct s FULL JOIN tributary.column_quality('q_shuf', 'at', '1 minute', key_column => 'id') p
    USING (window_start, column_name);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_w s FULL JOIN tributary.window_quality('q_shuf', 'at', '1 minute', slide => '30 seconds') p
    USING (window_start);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_r s FULL JOIN tributary.window_quality('q_shuf', 'at', '2 minutes', slide => '20 seconds') p
    USING (window_start);
-- only the workers read when the leader does not participate
SET parallel_leader_participation = off;
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_w s FULL JOIN tributary.window_quality('q_shuf', 'at', '1 minute', slide => '30 seconds') p
    USING (window_start);
-- one worker alone: it has every pane alone, so every window comes as its report
SET max_parallel_workers_per_gather = 1;
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_t s FULL JOIN tributary.window_quality('q_shuf', 'at', '1 minute') p
    USING (window_start);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct s FULL JOIN tributary.column_quality('q_shuf', 'at', '1 minute', key_column => 'id') p
    USING (window_start, column_name);
SET max_parallel_workers_per_gather = 2;
RESET client_min_messages;
\set VERBOSITY default
-- a worker's error is the caller's: date_bin's overflow in rows only workers read
CREATE TABLE q_far AS SELECT * FROM q_shuf;
UPDATE q_far SET at = '4700-01-01 BC' WHERE id % 1000 = 0;
SELECT count(*) FROM tributary.window_quality('q_far', 'at', '1 minute', origin => '290000-01-01');
RESET parallel_leader_participation;
\set VERBOSITY terse
SELECT count(*) FROM tributary.window_quality('q_far', 'at', '1 minute', origin => '290000-01-01');
\set VERBOSITY default
-- every window reported starts and ends inside the timestamp range: one that would end
-- after 294276 AD or start before 4714 BC is refused as start + window is in SQL, and
-- "from" and "to" leave such rows out
CREATE TABLE q_edge (at timestamptz, v float8);
INSERT INTO q_edge VALUES ('294276-12-31 22:10:00+00', 1), ('294276-12-31 23:59:59+00', 2);
SELECT * FROM tributary.window_quality('q_edge', 'at', '1 hour', origin => '294276-01-01 00:00+00');
SELECT window_start, window_end, rows
FROM tributary.window_quality('q_edge', 'at', '1 hour', "from" => '294276-12-31 21:00+00',
                              "to" => '294276-12-31 23:00+00', origin => '294276-01-01 00:00+00');
TRUNCATE q_edge;
INSERT INTO q_edge VALUES ('4714-11-24 00:30:00+00 BC', 3);
SELECT window_start, window_end, rows FROM tributary.window_quality('q_edge', 'at', '1 hour');
SELECT count(*) FROM tributary.column_quality('q_edge', 'at', '2 hours', slide => '1 hour');
DROP TABLE q_edge;
-- the query path, under forced parallel aggregation
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF)
SELECT date_bin('1 minute', at, '1970-01-01'), tributary.quality_state(at, id, device, value, status)
FROM q_big_v GROUP BY 1;
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct s FULL JOIN tributary.column_quality('q_big_v', 'at', '1 minute', key_column => 'id') p
    USING (window_start, column_name);
SELECT count(*) AS windows,
       count(*) FILTER (WHERE (s.*) IS DISTINCT FROM (p.*)) AS differing
FROM q_direct_w s FULL JOIN tributary.window_quality('q_big_v', 'at', '1 minute', slide => '30 seconds') p
    USING (window_start);
RESET force_parallel_mode;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_setup_cost;

-- Row-level security applies: a role that sees only some rows gets their windows.
CREATE ROLE q_reader;
GRANT USAGE ON SCHEMA tributary TO q_reader;
GRANT SELECT ON q_t TO q_reader;
ALTER TABLE q_t ENABLE ROW LEVEL SECURITY;
CREATE POLICY q_t_ok ON q_t FOR SELECT TO q_reader USING (status = 'ok');
SET ROLE q_reader;
SELECT window_start, rows FROM tributary.window_quality('q_t', 'at', '1 minute');
SELECT * FROM tributary.window_quality('q_big', 'at', '1 minute');
RESET ROLE;

DROP VIEW q_big_v;
DROP TABLE q_t, q_ts, q_big, q_shuf, q_far;
REVOKE USAGE ON SCHEMA tributary FROM q_reader;
DROP ROLE q_reader;
