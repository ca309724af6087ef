-- tributary 0.1.0 -> 0.2.0: several workers per stream ("parallelism").
--
-- _stream_counters reports how many workers a stream has (workers), _partition_counters
-- which worker consumes each partition (worker_pid); tributary.streams shows the count,
-- and the partition rows of tributary.stream_stats show their own worker. The stream rows
-- of tributary.stream_stats also carry the stream's state and last error, so one view
-- tells whether a stream is healthy. The views depend on the functions, so all four are
-- dropped and created again.

\echo Use "ALTER EXTENSION tributary UPDATE TO '0.2.0'" to load this file. \quit

DROP VIEW @extschema@.stream_stats;
DROP VIEW @extschema@.streams;
DROP FUNCTION @extschema@._partition_counters();
DROP FUNCTION @extschema@._stream_counters();

-- worker_pid, config_version and worker_started_at: of the stream's lowest-numbered
-- running worker (started_at: the earliest start); workers: how many run.
CREATE FUNCTION @extschema@._stream_counters(
    OUT stream_id integer, OUT worker_pid integer, OUT workers integer, OUT config_version integer,
    OUT worker_started_at timestamptz, OUT messages bigint, OUT rows bigint,
    OUT dead_letters bigint, OUT bytes bigint, OUT batches bigint, OUT last_commit timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_stream_counters';

-- Declared streams with their state. Secret options are masked for non-admins.
CREATE VIEW @extschema@.streams AS
SELECT c.name,
       c.source,
       c.target,
       coalesce(c.options ->> 'format', 'json') AS format,
       CASE WHEN @extschema@._is_admin() THEN c.options
            ELSE @extschema@._redact_options(c.options) END AS options,
       c.key_column,
       c.event_time_column,
       c.enabled,
       CASE WHEN NOT c.enabled THEN 'stopped'
            WHEN c.source = 'local' THEN 'running'
            WHEN k.worker_pid IS NOT NULL THEN 'running'
            ELSE 'starting' END AS state,
       k.worker_pid,
       coalesce(k.workers, 0) AS workers,
       c.config_version,
       c.owner,
       c.last_error,
       c.last_error_at,
       c.created_at
FROM @extschema@.stream_catalog c
LEFT JOIN @extschema@._stream_counters() k ON k.stream_id = c.id;

CREATE FUNCTION @extschema@._partition_counters(
    OUT stream_id integer, OUT topic text, OUT partition integer, OUT messages bigint,
    OUT rows bigint, OUT dead_letters bigint, OUT bytes bigint, OUT batches bigint,
    OUT last_commit timestamptz, OUT next_offset bigint, OUT high_watermark bigint,
    OUT lag bigint, OUT messages_per_sec float8, OUT worker_pid integer)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_partition_counters';

-- Live counters since server start (committed work only): one row per stream (topic and
-- partition NULL; lag summed over its partitions), then one per topic and partition a
-- broker stream's workers have consumed from, with the worker that consumes it (its
-- config version and start time are on the stream's row).
CREATE VIEW @extschema@.stream_stats AS
WITH parts AS (SELECT * FROM @extschema@._partition_counters())
SELECT c.name AS stream,
       NULL::text AS topic,
       NULL::integer AS partition,
       k.worker_pid,
       k.config_version AS worker_config_version,
       k.worker_started_at,
       coalesce(k.messages, 0) AS messages,
       coalesce(k.rows, 0) AS rows,
       coalesce(k.dead_letters, 0) AS dead_letters,
       coalesce(k.bytes, 0) AS bytes,
       coalesce(k.batches, 0) AS batches,
       k.last_commit,
       NULL::bigint AS current_offset,
       NULL::bigint AS high_watermark,
       (SELECT sum(p.lag)::bigint FROM parts p WHERE p.stream_id = c.id) AS lag,
       (SELECT sum(p.messages_per_sec) FROM parts p WHERE p.stream_id = c.id) AS messages_per_sec,
       s.state,
       s.last_error,
       s.last_error_at
FROM @extschema@.stream_catalog c
JOIN @extschema@.streams s ON s.name = c.name
LEFT JOIN @extschema@._stream_counters() k ON k.stream_id = c.id
UNION ALL
SELECT c.name, p.topic, p.partition, p.worker_pid, NULL::integer, NULL::timestamptz,
       p.messages, p.rows, p.dead_letters, p.bytes, p.batches, p.last_commit,
       p.next_offset, p.high_watermark, p.lag, p.messages_per_sec,
       NULL::text, NULL::text, NULL::timestamptz
FROM parts p
JOIN @extschema@.stream_catalog c ON c.id = p.stream_id;

REVOKE ALL ON @extschema@.streams, @extschema@.stream_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._stream_counters(), @extschema@._partition_counters() FROM PUBLIC;
GRANT SELECT ON @extschema@.streams, @extschema@.stream_stats TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._stream_counters(), @extschema@._partition_counters() TO PUBLIC;
