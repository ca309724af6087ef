--
-- quality_stream: continuous quality windows of a local stream (set_quality): windows
-- close as the watermark passes them, late rows amend them, and closed windows equal
-- window_quality and column_quality over the table; alerts and their handler.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET extra_float_digits = 0;

CREATE TABLE qs_t (id integer, at timestamptz, device text, value float8);
SELECT tributary.create_stream('qs', 'qs_t', 'local', '{"format": "json"}',
                               key => 'id', event_time => 'at');
CREATE TABLE qs_seen (alert jsonb);
CREATE FUNCTION qs_handler(alert jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO qs_seen VALUES (alert) $$;

-- Bad calls fail before anything changes.
CREATE TABLE qs_plain (v integer);
SELECT tributary.create_stream('qs_plain', 'qs_plain', 'local', '{"format": "json"}');
SELECT tributary.set_quality('qs_plain', '1 minute');
SELECT tributary.set_quality('nope', '1 minute');
SELECT tributary.set_quality('qs', '0 minutes');
SELECT tributary.set_quality('qs', '1 minute', slide => '25 seconds');
SELECT tributary.set_quality('qs', '1 minute', allowed_lateness => '-1 second');
SELECT tributary.set_quality('qs', '1 minute', columns => '{value,nope}');
-- system columns are no user columns (window_quality refuses them too)
SELECT tributary.set_quality('qs', '1 minute', columns => '{value,ctid}');
SELECT tributary.set_quality('qs', '1 minute', key_column => 'xmin');
SELECT tributary.set_quality('qs', '1 minute', thresholds => '{"speed": 1}');
SELECT tributary.set_quality('qs', '1 minute', thresholds => '{"columns": {"device": {"max": 3}}}');
SELECT tributary.set_quality('qs', '1 minute', columns => '{value}',
                             thresholds => '{"columns": {"device": {"completeness": 1}}}');
SELECT tributary.set_quality('qs', '1 minute', thresholds => '{"quality_score": "high"}');
SELECT tributary.set_quality('qs', '1 minute', weights => '{"completeness": 0, "validity": 0}');
SELECT tributary.set_quality('qs', '1 minute', weights => '{"beauty": 1}');
SELECT tributary.set_quality('qs', '1 minute', weights => '{"completeness": -1, "validity": 2}');
SELECT tributary.set_quality('qs', '1 minute', on_alert => 'abs(integer)');
SELECT tributary.set_quality('qs', '1 minute', key_column => 'nope');
SELECT count(*) AS configs FROM tributary.quality_config;

SELECT tributary.set_quality('qs', '1 minute', columns => '{device,value}',
                             thresholds => '{"quality_score": 0.9, "columns": {"value": {"max": 1000}}}',
                             on_alert => 'qs_handler(jsonb)');
SELECT stream, "window", slide, allowed_lateness, columns, thresholds, weights, on_alert
FROM tributary.quality_config;

-- Batch 1: minutes 00:00 and 00:01. The watermark (newest event 00:01:30) passes the end
-- of window 00:00, which closes in this batch's transaction; 00:01 stays open.
SELECT * FROM tributary.ingest('qs', ARRAY[
    '{"id": 1, "at": "2026-01-01T00:00:05Z", "device": "a", "value": 1.5}',
    '{"id": 2, "at": "2026-01-01T00:00:10Z", "device": "b", "value": 2.5}',
    '{"id": 2, "at": "2026-01-01T00:00:20Z", "device": "b", "value": 2.5}',
    '{"id": 3, "at": "2026-01-01T00:00:59.999999Z", "device": null, "value": 4}',
    '{"id": 4, "at": "2026-01-01T00:01:00Z", "device": "a", "value": 5}',
    '{"id": 5, "at": "2026-01-01T00:01:30Z", "device": "c"}']);
SELECT window_start, revision, rows, duplicates, round(completeness::numeric, 4) AS completeness,
       validity, timeliness, dead_letters, late_rows, round(quality_score::numeric, 4) AS score
FROM tributary.quality_windows ORDER BY window_start;
SELECT window_start, rows, duplicates, dead_letters, late_rows FROM tributary.quality_now('qs');
SELECT watermark, quality_open_panes, quality_state_bytes > 0 AS has_state
FROM tributary.stream_stats WHERE stream = 'qs' AND topic IS NULL;

-- Batch 2: minute 00:02, one late row of 00:00 (behind the watermark: counted late, and
-- amends closed window 00:00, revision 1), and a message that is not JSON (a dead letter
-- in the pane of the batch's newest event). Window 00:01 closes.
SELECT * FROM tributary.ingest('qs', ARRAY[
    '{"id": 6, "at": "2026-01-01T00:02:10Z", "device": "a", "value": 3}',
    '{"id": 7, "at": "2026-01-01T00:00:30Z", "device": "d", "value": 7}',
    'not json']);
SELECT window_start, revision, rows, duplicates, round(completeness::numeric, 4) AS completeness,
       validity, round(timeliness::numeric, 4) AS timeliness, dead_letters, late_rows,
       round(quality_score::numeric, 4) AS score
FROM tributary.quality_windows ORDER BY window_start;
SELECT window_start, rows, dead_letters, round(validity::numeric, 4) AS validity FROM tributary.quality_now('qs');

-- Closed windows equal window_quality and column_quality over the table, row for row
-- (validity and timeliness are the stream's own).
SELECT w.window_start,
       (w.window_end, w.rows, w.duplicates, w.completeness, w.uniqueness, w.consistency,
        w.outliers, w.newest_event)
       IS NOT DISTINCT FROM
       (a.window_end, a.rows, a.duplicates, a.completeness, a.uniqueness, a.consistency,
        a.outliers, a.newest_event) AS same
FROM tributary.quality_windows w
JOIN tributary.window_quality('qs_t', 'at', '1 minute', columns => '{device,value}', key_column => 'id') a
    USING (window_start)
ORDER BY 1;
SELECT c.window_start, c.column_name,
       (c.rows, c.non_null, c.completeness, c.distinct_count, c.mean, c.stddev, c.min, c.max,
        c.p50, c.p90, c.p99, c.outliers, c.outlier_rate)
       IS NOT DISTINCT FROM
       (a.rows, a.non_null, a.completeness, a.distinct_count, a.mean, a.stddev, a.min, a.max,
        a.p50, a.p90, a.p99, a.outliers, a.outlier_rate) AS same
FROM tributary.quality_columns c
JOIN tributary.column_quality('qs_t', 'at', '1 minute', columns => '{device,value}', key_column => 'id') a
    USING (window_start, column_name)
ORDER BY 1, 2;
-- Alerts: window 00:00 scored below 0.9 when it closed (its duplicate and null device):
-- raised, and the handler saw it; window 00:01 met the thresholds: recovered, once. The
-- amendment of 00:00 raises nothing (episodes follow windows as they close).
SELECT stream, window_start, kind, round(quality_score::numeric, 4) AS score, failed, handler_error
FROM tributary.alerts ORDER BY id;
SELECT alert ->> 'kind' AS kind, alert ->> 'stream' AS stream, alert ->> 'window_start' AS window_start
FROM qs_seen;

-- The handler now fails: its error is recorded on the alert and the batch still lands.
-- Window 00:02 (a dead letter: validity 0.5) raises, 00:03 recovers.
CREATE OR REPLACE FUNCTION qs_handler(alert jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'pager is down'; END $$;
SELECT * FROM tributary.ingest('qs', ARRAY[
    '{"id": 10, "at": "2026-01-01T00:03:01Z", "device": "a", "value": 1}',
    '{"id": 11, "at": "2026-01-01T00:03:02Z", "device": "b", "value": 2}',
    '{"id": 12, "at": "2026-01-01T00:04:01Z", "device": "c", "value": 3}',
    '{"id": 13, "at": "2026-01-01T00:05:01Z", "device": "c", "value": 3}']);
SELECT window_start, rows, round(quality_score::numeric, 4) AS score FROM tributary.quality_windows
ORDER BY window_start;
SELECT window_start, kind, failed, handler_error FROM tributary.alerts ORDER BY id;
SELECT count(*) AS rows_landed FROM qs_t;

-- A per-column threshold: a value above max raises again.
CREATE OR REPLACE FUNCTION qs_handler(alert jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO qs_seen VALUES (alert) $$;
SELECT * FROM tributary.ingest('qs', ARRAY[
    '{"id": 20, "at": "2026-01-01T00:05:30Z", "device": "a", "value": 5000}',
    '{"id": 21, "at": "2026-01-01T00:06:30Z", "device": "a", "value": 1}']);
SELECT window_start, kind, failed FROM tributary.alerts ORDER BY id;

-- Hopping windows: 2 minutes every minute, equal to window_quality's.
CREATE TABLE qh_t (id integer, at timestamptz, v float8);
SELECT tributary.create_stream('qh', 'qh_t', 'local', '{"format": "json"}',
                               key => 'id', event_time => 'at');
SELECT tributary.set_quality('qh', '2 minutes', slide => '1 minute', allowed_lateness => '30 seconds');
SELECT * FROM tributary.ingest('qh', ARRAY(
    SELECT json_build_object('id', i, 'at', timestamptz '2026-01-01' + i * interval '7 seconds',
                             'v', i % 13)::text
    FROM generate_series(1, 60) i));
SELECT * FROM tributary.ingest('qh', ARRAY(
    SELECT json_build_object('id', i, 'at', timestamptz '2026-01-01' + i * interval '7 seconds',
                             'v', i % 13)::text
    FROM generate_series(61, 120) i));
SELECT count(*) AS closed,
       count(*) FILTER (WHERE (w.rows, w.duplicates, w.completeness, w.consistency, w.newest_event)
                        IS DISTINCT FROM (a.rows, a.duplicates, a.completeness, a.consistency, a.newest_event))
           AS differing
FROM tributary.quality_windows w
JOIN tributary.window_quality('qh_t', 'at', '2 minutes', slide => '1 minute', key_column => 'id') a
    USING (window_start)
WHERE w.stream = 'qh';
SELECT min(window_start), max(window_start), max(window_end) <= (SELECT max(at) - interval '30 seconds' FROM qh_t)
       AS behind_watermark
FROM tributary.quality_windows WHERE stream = 'qh';

-- Windows roll up: the minute states of 00:02 and 00:03 merge into the 2-minute window
-- window_quality computes over the table (dead letters and late rows are the stream's).
SELECT (r.rows, r.duplicates, r.completeness, r.uniqueness, r.consistency, r.outliers, r.newest_event)
       IS NOT DISTINCT FROM
       (a.rows, a.duplicates, a.completeness, a.uniqueness, a.consistency, a.outliers, a.newest_event)
       AS rolls_up, r.dead_letters, r.late_rows
FROM (SELECT (tributary.quality_metrics(tributary.quality_merge(state))).*
      FROM tributary.quality_windows
      WHERE stream = 'qs' AND window_start IN ('2026-01-01 00:02', '2026-01-01 00:03')) r,
     tributary.window_quality('qs_t', 'at', '2 minutes', columns => '{device,value}', key_column => 'id',
                              "from" => '2026-01-01 00:02', "to" => '2026-01-01 00:04') a;

-- set_quality again starts new windows (closed ones stay); drop_quality ends them.
SELECT tributary.set_quality('qs', '5 minutes');
SELECT count(*) AS partials FROM tributary.quality_partials WHERE stream = 'qs';
SELECT * FROM tributary.ingest('qs', ARRAY['{"id": 90, "at": "2026-01-01T00:30:00Z", "device": "a", "value": 1}']);
SELECT count(*) AS partials FROM tributary.quality_partials WHERE stream = 'qs';
SELECT tributary.drop_quality('qs');
SELECT count(*) AS partials_left FROM tributary.quality_partials WHERE stream = 'qs';
SELECT tributary.drop_quality('qs');
SELECT tributary.drop_quality('qs', if_exists => true);
SELECT count(*) AS configs, (SELECT count(*) FROM tributary.quality_windows WHERE stream = 'qs') AS windows_kept
FROM tributary.quality_config WHERE stream = 'qs';
SELECT * FROM tributary.quality_now('qs');

-- A time date_bin cannot bin (from an origin far in the past to a time near the end of
-- the timestamp range, the difference does not fit an interval): continuously the row is
-- in no window, as a row without an event time, and the others go on; ad hoc, date_bin's
-- error, as the query path raises it.
CREATE TABLE qs_far (id int, at timestamptz);
SELECT tributary.create_stream('qs_far', 'qs_far', 'local', '{"format": "json"}',
                               event_time => 'at');
SELECT tributary.set_quality('qs_far', '1 hour', origin => '4700-01-01 00:00+00 BC');
SELECT * FROM tributary.ingest('qs_far', ARRAY['{"id": 1, "at": "294000-06-01T10:30:00Z"}',
                                               '{"id": 2, "at": "2026-06-01T10:30:00Z"}']);
SELECT pane_start, newest_event FROM tributary.quality_partials WHERE stream = 'qs_far' ORDER BY 1;
SELECT * FROM tributary.window_quality('qs_far', 'at', '1 hour', origin => '4700-01-01 00:00+00 BC');
SELECT tributary.drop_stream('qs_far');
DROP TABLE qs_far;

-- A row whose window would end after the last timestamp (294276-12-31 23:59:59.999999):
-- continuously in no window, ad hoc the error of start + window, and the row before it in
-- its window either way.
CREATE TABLE qs_edge (id int, at timestamptz);
SELECT tributary.create_stream('qs_edge', 'qs_edge', 'local', '{"format": "json"}',
                               event_time => 'at');
SELECT tributary.set_quality('qs_edge', '1 hour', origin => '294276-01-01 00:00+00');
SELECT * FROM tributary.ingest('qs_edge', ARRAY['{"id": 1, "at": "294276-12-31T22:30:00Z"}',
                                                '{"id": 2, "at": "294276-12-31T23:30:00Z"}']);
SELECT pane_start, newest_event FROM tributary.quality_partials WHERE stream = 'qs_edge' ORDER BY 1;
SELECT window_start, window_end, rows FROM tributary.quality_now('qs_edge');
SELECT window_start, window_end, rows
FROM tributary.window_quality('qs_edge', 'at', '1 hour', origin => '294276-01-01 00:00+00');
SELECT window_start, window_end, rows
FROM tributary.window_quality('qs_edge', 'at', '1 hour', "to" => '294276-12-31 23:00+00',
                              origin => '294276-01-01 00:00+00');
SELECT tributary.drop_stream('qs_edge');
DROP TABLE qs_edge;

-- Until a window closes, rows older than the first ones but within allowed_lateness are on
-- time, and their windows open ones.
CREATE TABLE qs_l (id int, at timestamptz);
SELECT tributary.create_stream('qs_l', 'qs_l', 'local', '{"format": "json"}', event_time => 'at');
SELECT tributary.set_quality('qs_l', '1 minute', allowed_lateness => '10 minutes');
SELECT * FROM tributary.ingest('qs_l', ARRAY['{"id": 1, "at": "2026-01-01T12:00:00Z"}',
                                             '{"id": 2, "at": "2026-01-01T12:00:30Z"}']);
SELECT * FROM tributary.ingest('qs_l', ARRAY['{"id": 3, "at": "2026-01-01T11:55:00Z"}']);
SELECT window_start, rows, late_rows FROM tributary.quality_now('qs_l') ORDER BY window_start;
SELECT watermark, (SELECT closed_until FROM tributary.quality_config WHERE stream = 'qs_l')
FROM tributary.stream_stats WHERE stream = 'qs_l' AND topic IS NULL;
SELECT tributary.drop_stream('qs_l');
DROP TABLE qs_l;

-- A day is 86400 seconds, also across a daylight saving change: in the late bound and in
-- stream_stats (2026-03-08 is 23 hours long in New York).
SET TimeZone = 'America/New_York';
CREATE TABLE qs_d (id int, at timestamptz);
SELECT tributary.create_stream('qs_d', 'qs_d', 'local', '{"format": "json"}', event_time => 'at');
SELECT tributary.set_quality('qs_d', '1 day', allowed_lateness => '1 day');
SELECT * FROM tributary.ingest('qs_d', ARRAY['{"id": 1, "at": "2026-03-09T12:00:00Z"}']);
SELECT watermark AT TIME ZONE 'UTC' AS watermark_utc FROM tributary.stream_stats
WHERE stream = 'qs_d' AND topic IS NULL;
-- 12:30 UTC on the 8th: on time by 86400 s (a calendar day back from the newest would be 13:00)
SELECT * FROM tributary.ingest('qs_d', ARRAY['{"id": 2, "at": "2026-03-08T12:30:00Z"}']);
SELECT sum(late_rows) AS late FROM tributary.quality_now('qs_d');
SELECT tributary.drop_stream('qs_d');
DROP TABLE qs_d;
SET TimeZone = 'UTC';

-- A pane of more than 64 partials is merged into one by the fold (batches in REPEATABLE
-- READ never fold, so each leaves a partial of its own).
CREATE TABLE qs_c (id int, at timestamptz);
SELECT tributary.create_stream('qs_c', 'qs_c', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
SELECT tributary.set_quality('qs_c', '1 minute');
\set ECHO none
\o /dev/null
SELECT 'BEGIN ISOLATION LEVEL REPEATABLE READ',
       format($$SELECT tributary.ingest('qs_c', ARRAY['{"id": %s, "at": "2026-01-01T00:00:%s.5Z"}'])$$, i, lpad((i % 60)::text, 2, '0')),
       'COMMIT'
FROM generate_series(1, 70) i \gexec
\o
\set ECHO all
SELECT count(*) AS partials FROM tributary.quality_partials WHERE stream = 'qs_c';
SELECT * FROM tributary.ingest('qs_c', ARRAY['{"id": 71, "at": "2026-01-01T00:00:30Z"}']);
SELECT count(*) AS partials, bool_or(folded) AS folded, max(newest_event) AS newest
FROM tributary.quality_partials WHERE stream = 'qs_c';
SELECT window_start, rows, duplicates FROM tributary.quality_now('qs_c');
SELECT * FROM tributary.ingest('qs_c', ARRAY['{"id": 72, "at": "2026-01-01T00:02:00Z"}']);
SELECT count(*) FILTER (WHERE (w.rows, w.duplicates, w.newest_event) IS DISTINCT FROM (a.rows, a.duplicates, a.newest_event))
         AS differing, count(*) AS closed
FROM tributary.quality_windows w
JOIN tributary.window_quality('qs_c', 'at', '1 minute', key_column => 'id') a USING (window_start)
WHERE w.stream = 'qs_c';
SELECT tributary.drop_stream('qs_c');
DROP TABLE qs_c;

-- The windows tables have no foreign keys. A closed window deleted by hand without its
-- columns is made again by its late rows (its columns replaced); a new stream of a dropped
-- stream's name finds nothing the old one left.
CREATE TABLE qs_x (id int, at timestamptz, v float8);
SELECT tributary.create_stream('qs_x', 'qs_x', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
SELECT tributary.set_quality('qs_x', '1 minute');
SELECT * FROM tributary.ingest('qs_x', ARRAY['{"id": 1, "at": "2026-01-01T00:00:10Z", "v": 1}',
                                             '{"id": 2, "at": "2026-01-01T00:02:00Z", "v": 2}']);
DELETE FROM tributary.quality_windows WHERE stream = 'qs_x' AND window_start = '2026-01-01 00:00+00';
SELECT * FROM tributary.ingest('qs_x', ARRAY['{"id": 3, "at": "2026-01-01T00:00:20Z", "v": 3}']);
SELECT window_start, revision, rows, late_rows FROM tributary.quality_windows WHERE stream = 'qs_x'
ORDER BY window_start;
SELECT window_start, column_name, rows, non_null FROM tributary.quality_columns WHERE stream = 'qs_x'
ORDER BY window_start, column_name;
SELECT tributary.drop_stream('qs_x');
INSERT INTO tributary.quality_partials (stream, pane_start, arrived, state)
VALUES ('qs_x', '2026-01-01', now(), '\x00');
INSERT INTO tributary.quality_windows (stream, window_start, window_end, rows, duplicates, outliers,
                                       dead_letters, late_rows, closed_at, state)
VALUES ('qs_x', '2026-01-01', '2026-01-01 00:01', 0, 0, 0, 0, 0, now(), '\x00');
INSERT INTO tributary.quality_columns (stream, window_start, window_end, column_name, rows, non_null,
                                       distinct_count)
VALUES ('qs_x', '2026-01-01', '2026-01-01 00:01', 'v', 0, 0, 0);
SELECT tributary.create_stream('qs_x', 'qs_x', 'local', '{"format": "json"}', event_time => 'at');
SELECT (SELECT count(*) FROM tributary.quality_partials WHERE stream = 'qs_x') AS partials,
       (SELECT count(*) FROM tributary.quality_windows WHERE stream = 'qs_x') AS windows,
       (SELECT count(*) FROM tributary.quality_columns WHERE stream = 'qs_x') AS columns;
SELECT tributary.drop_stream('qs_x');
DROP TABLE qs_x;

-- Stages run as planned when their batch began: a trigger that turns quality on while the
-- batch's rows go in (the snapshot stage, alone, had the batch path keep no copies of them)
-- takes effect with the next batch.
CREATE TABLE qs_plan (id text, at timestamptz);
CREATE FUNCTION qs_plan_on() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM tributary.quality_config WHERE stream = 'qs_plan') THEN
        PERFORM tributary.set_quality('qs_plan', '1 minute');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER qs_plan_on BEFORE INSERT ON qs_plan FOR EACH ROW EXECUTE FUNCTION qs_plan_on();
SELECT tributary.create_stream('qs_plan', 'qs_plan', 'local', '{"format": "json"}', key => 'id',
                               event_time => 'at');
SELECT tributary.set_snapshot('qs_plan');
SELECT * FROM tributary.ingest('qs_plan', ARRAY['{"id": "a", "at": "2026-01-01T00:00:01Z"}',
                                                '{"id": "b", "at": "2026-01-01T00:00:02Z"}']);
SELECT count(*) AS partials FROM tributary.quality_partials WHERE stream = 'qs_plan';
SELECT * FROM tributary.ingest('qs_plan', ARRAY['{"id": "c", "at": "2026-01-01T00:00:03Z"}']);
SELECT window_start, rows FROM tributary.quality_now('qs_plan');
SELECT key FROM tributary.snapshot('qs_plan') ORDER BY key;
SELECT tributary.drop_stream('qs_plan');
DROP TABLE qs_plan;
DROP FUNCTION qs_plan_on();

-- Dropping a stream drops its windows and alerts.
SELECT tributary.drop_stream('qs');
SELECT tributary.drop_stream('qh');
SELECT tributary.drop_stream('qs_plain');
SELECT (SELECT count(*) FROM tributary.quality_windows) AS windows,
       (SELECT count(*) FROM tributary.quality_columns) AS columns,
       (SELECT count(*) FROM tributary.quality_partials) AS partials,
       (SELECT count(*) FROM tributary.quality_config) AS configs,
       (SELECT count(*) FROM tributary.alerts) AS alerts;
DROP TABLE qs_t, qh_t, qs_plain, qs_seen;
DROP FUNCTION qs_handler(jsonb);
