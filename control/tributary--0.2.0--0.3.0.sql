-- tributary 0.2.0 -> 0.3.0: security and fault hardening.
--
-- Who may manage a stream and see its options, errors and dead letters; stream states
-- "failed" and "waiting"; alter_stream_owner; the librdkafka property policy and masking;
-- bounded memory per message; source-neutral positions; the quality building blocks
-- (sketch types and aggregates that merge exactly).

\echo Use "ALTER EXTENSION tributary UPDATE TO '0.3.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------
-- Section: stream ownership, states and visibility (catalog, views, dead-letter policy).
-- ---------------------------------------------------------------------------------------

-- failed: the worker found the stream unable to run whatever it retries (target or owner
-- gone, row-level security on the target); the launcher leaves it alone until it is
-- altered, started or dropped. waiting: the launcher has no worker slot for it
-- (tributary.max_workers, tributary.max_workers_per_role); last_error says which.
ALTER TABLE @extschema@.stream_catalog
    ADD COLUMN failed boolean NOT NULL DEFAULT false,
    ADD COLUMN waiting boolean NOT NULL DEFAULT false;

-- 0.2.0 accepted Redis streams and ran an idle worker that showed "running"; 0.3.0 consumes
-- them, with its own option names. Such a stream fails now, saying what to do; nothing was
-- ever read from it, so nothing is lost.
UPDATE @extschema@.stream_catalog
SET failed = true, last_error_at = pg_catalog.now(),
    last_error = 'declared with tributary 0.2.0, which never consumed Redis streams: give it the options of 0.3.0''s redis source (option "stream" instead of "stream_key") with alter_stream, then start it'
WHERE source = 'redis';

-- True when the current user may manage a stream owned by owner and see its options,
-- errors and dead letters: an admin, or a member of the owner role (not when that role
-- was dropped).
CREATE FUNCTION @extschema@._may_manage(owner oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._is_admin()
        OR EXISTS (SELECT FROM pg_catalog.pg_roles r
                   WHERE r.oid = owner AND pg_catalog.pg_has_role(current_user, r.oid, 'USAGE'))
$$;

-- The owner of a stream, for the dead-letter policy. SECURITY DEFINER so it can read the
-- catalog; it tells nothing tributary.streams does not already show.
CREATE FUNCTION @extschema@._stream_owner(stream text)
RETURNS oid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.owner::oid FROM @extschema@.stream_catalog s WHERE s.name = stream
$$;

DROP POLICY dead_letters_of_managed_streams ON @extschema@.dead_letters;
DROP FUNCTION @extschema@._target_owner(text);
CREATE POLICY dead_letters_of_managed_streams ON @extschema@.dead_letters
    FOR ALL TO PUBLIC
    USING (@extschema@._may_manage(@extschema@._stream_owner(stream)));

-- Continuous quality windows per stream (tributary.set_quality; docs/quality.md): the
-- stream's settings and how far its windows have progressed. Created here because
-- stream_stats below shows each stream's watermark.
CREATE TABLE @extschema@.quality_config (
    stream           text PRIMARY KEY
                     REFERENCES @extschema@.stream_catalog (name) ON DELETE CASCADE ON UPDATE CASCADE,
    "window"         pg_catalog.interval NOT NULL,
    slide            pg_catalog.interval NOT NULL,
    allowed_lateness pg_catalog.interval NOT NULL,
    grace            pg_catalog.interval NOT NULL,
    origin           pg_catalog.timestamptz NOT NULL,
    columns          pg_catalog.text[] NOT NULL,
    thresholds       jsonb NOT NULL,
    weights          jsonb NOT NULL,
    on_alert         pg_catalog.regprocedure,
    key_column       text,		-- duplicates by it; NULL: the stream's key column
    -- progress, moved on by the fold that closes windows (quality/continuous.c)
    newest_event     pg_catalog.timestamptz,
    last_arrival     pg_catalog.timestamptz,
    closed_until     pg_catalog.timestamptz,
    alerting         boolean NOT NULL DEFAULT false,
    created_at       pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.quality_config IS
    'Continuous quality windows per stream; change them only with tributary.set_quality and drop_quality.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.quality_config', '');

-- Each batch's rows, summarized per pane (one slide of event time) by the quality stage in
-- the batch's transaction; the fold merges them into windows as the watermark passes.
-- No foreign keys here, in quality_windows or in quality_columns: they are written per batch
-- and per window, where each key's check was a query of its own; set_quality, drop_quality
-- and drop_stream delete their rows.
CREATE TABLE @extschema@.quality_partials (
    stream       text NOT NULL,
    pane_start   pg_catalog.timestamptz NOT NULL,
    newest_event pg_catalog.timestamptz,
    arrived      pg_catalog.timestamptz NOT NULL,
    state        pg_catalog.bytea NOT NULL,
    -- already merged into every closed window that covers the pane
    folded       boolean NOT NULL DEFAULT false
);
CREATE INDEX quality_partials_stream_pane_idx ON @extschema@.quality_partials (stream, pane_start);
-- States are hashes and counts, which do not compress: never try (pglz was most of the stage).
ALTER TABLE @extschema@.quality_partials ALTER COLUMN state SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.quality_partials IS
    'Open quality windows, as per-batch partial states per pane; read them with tributary.quality_now().';

-- Snapshots: the latest record per key of a stream (tributary.set_snapshot), kept by the
-- snapshot stage in each batch's transaction (fanout/snapshot.c), and fan-out settings.
CREATE TABLE @extschema@.snapshot_config (
    stream         text PRIMARY KEY
                   REFERENCES @extschema@.stream_catalog (name) ON DELETE CASCADE ON UPDATE CASCADE,
    "order"        text NOT NULL CHECK ("order" IN ('source', 'event_time')),
    -- the stream's newest seq: each change (upsert or delete) takes the next one, in commit order
    last_seq       bigint NOT NULL DEFAULT 0,
    -- fan-out (tributary.set_fanout); channels NULL: none
    channels       text[] CHECK (channels OPERATOR(pg_catalog.<@) '{stream,key}'),
    payload        text CHECK (payload IN ('full', 'keys')),
    min_interval   pg_catalog.interval,
    heartbeat      pg_catalog.interval,
    -- the last notification on the stream's channel (a change, a heartbeat or a resync)
    notified_at    pg_catalog.timestamptz,
    -- notifications skipped because the notification queue was too full, and whether
    -- clients are owed a resync once it drains
    skipped        bigint NOT NULL DEFAULT 0,
    resync_pending boolean NOT NULL DEFAULT false,
    created_at     pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.snapshot_config IS
    'Snapshots per key and their fan-out; change them only with tributary.set_snapshot, drop_snapshot, set_fanout and drop_fanout.';

-- One row per key ever seen; a deleted key keeps its row (record NULL) so that its seq
-- and source position stay known. row_table, row_tid, row_xmin name the row as it
-- landed in the target, which tributary.snapshot() shows under row-level security only
-- when the caller may see that row.
CREATE TABLE @extschema@.snapshots (
    stream      text NOT NULL
                REFERENCES @extschema@.snapshot_config (stream) ON DELETE CASCADE ON UPDATE CASCADE,
    key         text COLLATE "C" NOT NULL,	-- byte order: cheap comparisons, any key
    seq         bigint NOT NULL,
    record      jsonb,
    updated_at  pg_catalog.timestamptz NOT NULL,
    event_time  pg_catalog.timestamptz,
    source_part text,
    source_pos  bigint,
    row_table   pg_catalog.oid,
    row_tid     pg_catalog.tid,
    row_xmin    pg_catalog.xid,
    -- the key's channel: its last notification, and whether a change waits for min_interval
    notified_at    pg_catalog.timestamptz,
    notify_pending boolean NOT NULL DEFAULT false,
    PRIMARY KEY (stream, key)
) WITH (fillfactor = 70);	-- every change updates its key's row: room for HOT updates
-- (notified_at is not indexed, so that an unthrottled key's update stays a HOT update)
CREATE INDEX snapshots_pending_idx ON @extschema@.snapshots (stream) WHERE notify_pending;
COMMENT ON TABLE @extschema@.snapshots IS
    'The latest record per key of streams with a snapshot; read them with tributary.snapshot().';

DROP VIEW @extschema@.stream_stats;
DROP VIEW @extschema@.streams;

-- Declared streams with their state. Options are shown to those who may manage the
-- stream (secrets masked for non-admins), errors likewise; the rest is public.
CREATE VIEW @extschema@.streams AS
SELECT c.name,
       c.source,
       c.target,
       coalesce(c.options ->> 'format', 'json') AS format,
       CASE WHEN @extschema@._is_admin() THEN c.options
            WHEN @extschema@._may_manage(c.owner) THEN @extschema@._redact_options(c.options)
       END AS options,
       c.key_column,
       c.event_time_column,
       c.enabled,
       CASE WHEN NOT c.enabled THEN 'stopped'
            WHEN c.failed THEN 'failed'
            WHEN c.source = 'local' THEN 'running'
            WHEN k.worker_pid IS NOT NULL THEN 'running'
            WHEN c.waiting THEN 'waiting'
            ELSE 'starting' END AS state,
       k.worker_pid,
       coalesce(k.workers, 0) AS workers,
       c.config_version,
       c.owner,
       CASE WHEN @extschema@._may_manage(c.owner) THEN c.last_error END AS last_error,
       CASE WHEN @extschema@._may_manage(c.owner) THEN c.last_error_at END AS last_error_at,
       c.created_at
FROM @extschema@.stream_catalog c
LEFT JOIN @extschema@._stream_counters() k ON k.stream_id = c.id;

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
       s.last_error_at,
       w.watermark,
       pg_catalog.now() - w.watermark AS watermark_lag,
       (SELECT count(DISTINCT p.pane_start) FROM @extschema@.quality_partials p
        WHERE q.stream IS NOT NULL AND p.stream = c.name) AS quality_open_panes,
       (SELECT sum(pg_catalog.octet_length(p.state)) FROM @extschema@.quality_partials p
        WHERE q.stream IS NOT NULL AND p.stream = c.name)::bigint AS quality_state_bytes,
       sc.last_seq AS snapshot_seq,
       sc.skipped AS notifications_skipped
FROM @extschema@.stream_catalog c
JOIN @extschema@.streams s ON s.name = c.name
LEFT JOIN @extschema@._stream_counters() k ON k.stream_id = c.id
LEFT JOIN @extschema@.quality_config q ON q.stream = c.name
-- the watermark: the newest event minus the allowed lateness, never before the end of the
-- last closed window (the wall clock closes a silent stream's windows past the newest
-- event), in fixed seconds as quality/continuous.c counts (a day is 86400 s, also across
-- a daylight saving change)
LEFT JOIN LATERAL (SELECT GREATEST(
           q.newest_event - pg_catalog.make_interval(secs => pg_catalog.date_part('epoch', q.allowed_lateness)),
           q.closed_until + pg_catalog.make_interval(secs => pg_catalog.date_part('epoch', q."window")
                                                     OPERATOR(pg_catalog.-) pg_catalog.date_part('epoch', q.slide)))
           AS watermark) w ON true
LEFT JOIN @extschema@.snapshot_config sc ON sc.stream = c.name
UNION ALL
SELECT c.name, p.topic, p.partition, p.worker_pid, NULL::integer, NULL::timestamptz,
       p.messages, p.rows, p.dead_letters, p.bytes, p.batches, p.last_commit,
       p.next_offset, p.high_watermark, p.lag, p.messages_per_sec,
       NULL::text, NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::interval,
       NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint
FROM parts p
JOIN @extschema@.stream_catalog c ON c.id = p.stream_id;

CREATE FUNCTION @extschema@.alter_stream_owner(name text, new_owner pg_catalog.regrole)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_alter_stream_owner';

REVOKE ALL ON @extschema@.streams, @extschema@.stream_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._may_manage(oid), @extschema@._stream_owner(text),
    @extschema@.alter_stream_owner(text, pg_catalog.regrole) FROM PUBLIC;
GRANT SELECT ON @extschema@.streams, @extschema@.stream_stats TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._may_manage(oid), @extschema@._stream_owner(text),
    @extschema@.alter_stream_owner(text, pg_catalog.regrole) TO PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Section: librdkafka property policy and masking.
-- ---------------------------------------------------------------------------------------

-- Options as non-admins see them, masked by the library's librdkafka property table (the
-- one create_stream and alter_stream check rights against): only properties every role may
-- set that hold no secret stay in clear; a Redis URL loses its password. Was a regex over
-- property names in SQL. Same name and signature; EXECUTE stays granted to PUBLIC.
CREATE OR REPLACE FUNCTION @extschema@._redact_options(options jsonb)
RETURNS jsonb
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_redact_options';

-- ---------------------------------------------------------------------------------------
-- Section: bounded memory per message (dead letters).
-- ---------------------------------------------------------------------------------------

-- Payloads are stored uncompressed and out of line: compressing a large rejected message
-- would need a buffer as large as the message; the dead letter must cost no more than
-- holding it. Rows already stored keep their form until rewritten.
ALTER TABLE @extschema@.dead_letters ALTER COLUMN payload SET STORAGE EXTERNAL;

-- ---------------------------------------------------------------------------------------
-- Section: source-neutral positions (offsets, dead letters).
-- ---------------------------------------------------------------------------------------

-- A position is text the source defines, so a source whose positions are not integers
-- (Redis entry ids such as 1700000000000-3, per stream key) fits the same table as Kafka.
-- Columns keep their places and rows their values: topic becomes source_stream, the
-- partition number and the next offset become their decimal text. The primary key follows
-- the renamed columns: (stream, source_stream, source_partition).
ALTER TABLE @extschema@.offsets
    ALTER COLUMN partition TYPE text USING partition::pg_catalog.text,
    ALTER COLUMN next_offset TYPE text USING next_offset::pg_catalog.text;
ALTER TABLE @extschema@.offsets RENAME COLUMN topic TO source_stream;
ALTER TABLE @extschema@.offsets RENAME COLUMN partition TO source_partition;
ALTER TABLE @extschema@.offsets RENAME COLUMN next_offset TO position;
COMMENT ON TABLE @extschema@.offsets IS
    'Source position per stream, source stream and partition, committed in the same transaction as the rows it covers.';
COMMENT ON COLUMN @extschema@.offsets.source_stream IS
    'Kafka: the topic. Redis: the stream key.';
COMMENT ON COLUMN @extschema@.offsets.source_partition IS
    'Kafka: the partition number. Empty for sources without partitions.';
COMMENT ON COLUMN @extschema@.offsets.position IS
    'Defined by the source. Kafka: the next offset to read. Redis: the last entry id stored.';

-- The same for a dead letter's origin; all three stay NULL for messages from ingest().
ALTER TABLE @extschema@.dead_letters
    ALTER COLUMN partition TYPE text USING partition::pg_catalog.text,
    ALTER COLUMN source_offset TYPE text USING source_offset::pg_catalog.text;
ALTER TABLE @extschema@.dead_letters RENAME COLUMN topic TO source_stream;
ALTER TABLE @extschema@.dead_letters RENAME COLUMN partition TO source_partition;
ALTER TABLE @extschema@.dead_letters RENAME COLUMN source_offset TO source_position;

-- Kafka streams' offsets, typed as before 0.3.0. Each cast is guarded by the source
-- although the WHERE clause already filters on it: a condition on partition or next_offset
-- is pushed down to wherever the planner likes (a security barrier does not stop that),
-- and must never cast another source's position (a Redis entry id is no number). Readable
-- by everyone, as tributary.offsets is; stream_catalog only tells which streams are
-- Kafka's, which tributary.streams shows everyone too.
CREATE VIEW @extschema@.kafka_offsets AS
SELECT o.stream,
       o.source_stream AS topic,
       CASE WHEN c.source = 'kafka' THEN o.source_partition::pg_catalog.int4 END AS partition,
       CASE WHEN c.source = 'kafka' THEN o.position::pg_catalog.int8 END AS next_offset,
       o.updated_at
FROM @extschema@.offsets o
JOIN @extschema@.stream_catalog c ON c.name = o.stream
WHERE c.source = 'kafka';
COMMENT ON VIEW @extschema@.kafka_offsets IS
    'The next offset to read per Kafka stream, topic and partition (tributary.offsets, typed).';
GRANT SELECT ON @extschema@.kafka_offsets TO PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Section: quality building blocks (src/quality/): sketches and sums that merge exactly.
-- ---------------------------------------------------------------------------------------

-- Every aggregate below has an internal state with combine, serialize and deserialize
-- functions, so it runs in parallel; its result depends on the multiset of its inputs
-- only (not on their order, nor on how partial states were combined), so a metric kept
-- batch by batch and the same metric computed by one query agree exactly. Support
-- functions (_name) are not for direct use.

-- A HyperLogLog distinct-count sketch (exact up to 256 distinct values), in its versioned
-- stored form; as text, that form in hex.
CREATE TYPE @extschema@.hll;

CREATE FUNCTION @extschema@.hll_in(pg_catalog.cstring)
RETURNS @extschema@.hll
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_in';

CREATE FUNCTION @extschema@.hll_out(@extschema@.hll)
RETURNS pg_catalog.cstring
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_out';

CREATE FUNCTION @extschema@.hll_recv(pg_catalog.internal)
RETURNS @extschema@.hll
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_recv';

CREATE FUNCTION @extschema@.hll_send(@extschema@.hll)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_send';

CREATE TYPE @extschema@.hll (
    INPUT = @extschema@.hll_in,
    OUTPUT = @extschema@.hll_out,
    RECEIVE = @extschema@.hll_recv,
    SEND = @extschema@.hll_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = extended
);
COMMENT ON TYPE @extschema@.hll IS
    'HyperLogLog distinct-count sketch (precision 14, exact up to 256 distinct values); merges exactly.';

CREATE FUNCTION @extschema@.hll_count(@extschema@.hll)
RETURNS pg_catalog.int8
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_count';

CREATE FUNCTION @extschema@._hll_trans(pg_catalog.internal, pg_catalog.anyelement)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_trans';

CREATE FUNCTION @extschema@._hll_merge_trans(pg_catalog.internal, @extschema@.hll)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_merge_trans';

CREATE FUNCTION @extschema@._hll_combine(pg_catalog.internal, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_combine';

CREATE FUNCTION @extschema@._hll_serialize(pg_catalog.internal)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_serialize';

CREATE FUNCTION @extschema@._hll_deserialize(pg_catalog.bytea, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_deserialize';

CREATE FUNCTION @extschema@._hll_final(pg_catalog.internal)
RETURNS @extschema@.hll
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_final';

CREATE FUNCTION @extschema@._hll_final_count(pg_catalog.internal)
RETURNS pg_catalog.int8
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_hll_final_count';

CREATE AGGREGATE @extschema@.approx_distinct(pg_catalog.anyelement) (
    SFUNC = @extschema@._hll_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._hll_final_count,
    COMBINEFUNC = @extschema@._hll_combine,
    SERIALFUNC = @extschema@._hll_serialize,
    DESERIALFUNC = @extschema@._hll_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.approx_distinct(pg_catalog.anyelement) IS
    'Distinct non-null values: exact up to 256, else a HyperLogLog estimate (about 0.8 % standard error).';

CREATE AGGREGATE @extschema@.hll_agg(pg_catalog.anyelement) (
    SFUNC = @extschema@._hll_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._hll_final,
    COMBINEFUNC = @extschema@._hll_combine,
    SERIALFUNC = @extschema@._hll_serialize,
    DESERIALFUNC = @extschema@._hll_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.hll_agg(pg_catalog.anyelement) IS
    'The distinct-count sketch of the non-null values.';

CREATE AGGREGATE @extschema@.hll_merge(@extschema@.hll) (
    SFUNC = @extschema@._hll_merge_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._hll_final,
    COMBINEFUNC = @extschema@._hll_combine,
    SERIALFUNC = @extschema@._hll_serialize,
    DESERIALFUNC = @extschema@._hll_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.hll_merge(@extschema@.hll) IS
    'The union of distinct-count sketches: the sketch of all their values.';

-- A DDSketch quantile sketch (relative accuracy 0.005), in its versioned stored form; as
-- text, that form in hex.
CREATE TYPE @extschema@.ddsketch;

CREATE FUNCTION @extschema@.ddsketch_in(pg_catalog.cstring)
RETURNS @extschema@.ddsketch
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_in';

CREATE FUNCTION @extschema@.ddsketch_out(@extschema@.ddsketch)
RETURNS pg_catalog.cstring
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_out';

CREATE FUNCTION @extschema@.ddsketch_recv(pg_catalog.internal)
RETURNS @extschema@.ddsketch
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_recv';

CREATE FUNCTION @extschema@.ddsketch_send(@extschema@.ddsketch)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_send';

CREATE TYPE @extschema@.ddsketch (
    INPUT = @extschema@.ddsketch_in,
    OUTPUT = @extschema@.ddsketch_out,
    RECEIVE = @extschema@.ddsketch_recv,
    SEND = @extschema@.ddsketch_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = extended
);
COMMENT ON TYPE @extschema@.ddsketch IS
    'DDSketch quantile sketch (relative accuracy 0.005, at most 4096 bins per sign); merges exactly.';

CREATE FUNCTION @extschema@.ddsketch_quantile(@extschema@.ddsketch, pg_catalog.float8)
RETURNS pg_catalog.float8
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_quantile';

CREATE FUNCTION @extschema@.ddsketch_quantile(@extschema@.ddsketch, pg_catalog.float8[])
RETURNS pg_catalog.float8[]
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_ddsketch_quantiles';

CREATE FUNCTION @extschema@._dds_trans(pg_catalog.internal, pg_catalog.float8)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_trans';

CREATE FUNCTION @extschema@._dds_merge_trans(pg_catalog.internal, @extschema@.ddsketch)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_merge_trans';

CREATE FUNCTION @extschema@._dds_quantile_trans(pg_catalog.internal, pg_catalog.float8, pg_catalog.float8)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_quantile_trans';

CREATE FUNCTION @extschema@._dds_quantiles_trans(pg_catalog.internal, pg_catalog.float8, pg_catalog.float8[])
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_quantiles_trans';

CREATE FUNCTION @extschema@._dds_combine(pg_catalog.internal, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_combine';

CREATE FUNCTION @extschema@._dds_serialize(pg_catalog.internal)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_serialize';

CREATE FUNCTION @extschema@._dds_deserialize(pg_catalog.bytea, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_deserialize';

CREATE FUNCTION @extschema@._dds_final(pg_catalog.internal)
RETURNS @extschema@.ddsketch
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_final';

CREATE FUNCTION @extschema@._dds_quantile_final(pg_catalog.internal)
RETURNS pg_catalog.float8
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_quantile_final';

CREATE FUNCTION @extschema@._dds_quantiles_final(pg_catalog.internal)
RETURNS pg_catalog.float8[]
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_dds_quantiles_final';

CREATE AGGREGATE @extschema@.approx_quantile(pg_catalog.float8, pg_catalog.float8) (
    SFUNC = @extschema@._dds_quantile_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._dds_quantile_final,
    COMBINEFUNC = @extschema@._dds_combine,
    SERIALFUNC = @extschema@._dds_serialize,
    DESERIALFUNC = @extschema@._dds_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.approx_quantile(pg_catalog.float8, pg_catalog.float8) IS
    'The quantile (0 to 1, the same in every row) of the values, within 0.5 % (relative); NaN left out.';

CREATE AGGREGATE @extschema@.approx_quantile(pg_catalog.float8, pg_catalog.float8[]) (
    SFUNC = @extschema@._dds_quantiles_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._dds_quantiles_final,
    COMBINEFUNC = @extschema@._dds_combine,
    SERIALFUNC = @extschema@._dds_serialize,
    DESERIALFUNC = @extschema@._dds_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.approx_quantile(pg_catalog.float8, pg_catalog.float8[]) IS
    'The quantiles (0 to 1, the same array in every row) of the values, within 0.5 % (relative); NaN left out.';

CREATE AGGREGATE @extschema@.ddsketch_agg(pg_catalog.float8) (
    SFUNC = @extschema@._dds_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._dds_final,
    COMBINEFUNC = @extschema@._dds_combine,
    SERIALFUNC = @extschema@._dds_serialize,
    DESERIALFUNC = @extschema@._dds_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.ddsketch_agg(pg_catalog.float8) IS
    'The quantile sketch of the non-null values.';

CREATE AGGREGATE @extschema@.ddsketch_merge(@extschema@.ddsketch) (
    SFUNC = @extschema@._dds_merge_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._dds_final,
    COMBINEFUNC = @extschema@._dds_combine,
    SERIALFUNC = @extschema@._dds_serialize,
    DESERIALFUNC = @extschema@._dds_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.ddsketch_merge(@extschema@.ddsketch) IS
    'The union of quantile sketches: the sketch of all their values.';

-- The non-null fraction of a group's rows.
CREATE FUNCTION @extschema@._completeness_trans(pg_catalog.internal, pg_catalog.anyelement)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_completeness_trans';

CREATE FUNCTION @extschema@._completeness_combine(pg_catalog.internal, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_completeness_combine';

CREATE FUNCTION @extschema@._completeness_serialize(pg_catalog.internal)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_completeness_serialize';

CREATE FUNCTION @extschema@._completeness_deserialize(pg_catalog.bytea, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_completeness_deserialize';

CREATE FUNCTION @extschema@._completeness_final(pg_catalog.internal)
RETURNS pg_catalog.float8
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_completeness_final';

CREATE AGGREGATE @extschema@.completeness(pg_catalog.anyelement) (
    SFUNC = @extschema@._completeness_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._completeness_final,
    COMBINEFUNC = @extschema@._completeness_combine,
    SERIALFUNC = @extschema@._completeness_serialize,
    DESERIALFUNC = @extschema@._completeness_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.completeness(pg_catalog.anyelement) IS
    'The fraction of rows whose value is not null (0 when all are null, null without rows).';

-- Mean and sample standard deviation from exact sums: the same bits in any order.
CREATE FUNCTION @extschema@._xsum_trans(pg_catalog.internal, pg_catalog.float8)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_trans';

CREATE FUNCTION @extschema@._xsum_combine(pg_catalog.internal, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_combine';

CREATE FUNCTION @extschema@._xsum_serialize(pg_catalog.internal)
RETURNS pg_catalog.bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_serialize';

CREATE FUNCTION @extschema@._xsum_deserialize(pg_catalog.bytea, pg_catalog.internal)
RETURNS pg_catalog.internal
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_deserialize';

CREATE FUNCTION @extschema@._xsum_avg_final(pg_catalog.internal)
RETURNS pg_catalog.float8
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_avg_final';

CREATE FUNCTION @extschema@._xsum_stddev_final(pg_catalog.internal)
RETURNS pg_catalog.float8
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_xsum_stddev_final';

CREATE AGGREGATE @extschema@.exact_avg(pg_catalog.float8) (
    SFUNC = @extschema@._xsum_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._xsum_avg_final,
    COMBINEFUNC = @extschema@._xsum_combine,
    SERIALFUNC = @extschema@._xsum_serialize,
    DESERIALFUNC = @extschema@._xsum_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.exact_avg(pg_catalog.float8) IS
    'The mean of the values from their exact sum: the same result in any order or plan.';

CREATE AGGREGATE @extschema@.exact_stddev(pg_catalog.float8) (
    SFUNC = @extschema@._xsum_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._xsum_stddev_final,
    COMBINEFUNC = @extschema@._xsum_combine,
    SERIALFUNC = @extschema@._xsum_serialize,
    DESERIALFUNC = @extschema@._xsum_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.exact_stddev(pg_catalog.float8) IS
    'The sample standard deviation of the values from exact sums: the same result in any order or plan.';

--
-- Quality windows (docs/quality.md). tributary.quality_state is one window's state over
-- a group of rows (its event times, a key or the whole row for duplicates, and the watched
-- columns), stored as bytea; quality_merge merges such states exactly. window_quality and
-- column_quality group any table's rows by window with them.
--
CREATE FUNCTION @extschema@._quality_state_trans(pg_catalog.internal, pg_catalog.timestamptz, "any", VARIADIC "any")
RETURNS pg_catalog.internal LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_state_trans';
CREATE FUNCTION @extschema@._quality_state_combine(pg_catalog.internal, pg_catalog.internal)
RETURNS pg_catalog.internal LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_state_combine';
CREATE FUNCTION @extschema@._quality_state_serialize(pg_catalog.internal)
RETURNS pg_catalog.bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_state_serialize';
CREATE FUNCTION @extschema@._quality_state_deserialize(pg_catalog.bytea, pg_catalog.internal)
RETURNS pg_catalog.internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_state_deserialize';
CREATE FUNCTION @extschema@._quality_state_final(pg_catalog.internal)
RETURNS pg_catalog.bytea LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_state_final';
CREATE FUNCTION @extschema@._quality_merge_trans(pg_catalog.internal, pg_catalog.bytea)
RETURNS pg_catalog.internal LANGUAGE c CALLED ON NULL INPUT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_merge_trans';

CREATE AGGREGATE @extschema@.quality_state(event_time pg_catalog.timestamptz, key "any", VARIADIC columns "any") (
    SFUNC = @extschema@._quality_state_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._quality_state_final,
    COMBINEFUNC = @extschema@._quality_state_combine,
    SERIALFUNC = @extschema@._quality_state_serialize,
    DESERIALFUNC = @extschema@._quality_state_deserialize,
    PARALLEL = SAFE
);
CREATE AGGREGATE @extschema@.quality_merge(state pg_catalog.bytea) (
    SFUNC = @extschema@._quality_merge_trans,
    STYPE = pg_catalog.internal,
    FINALFUNC = @extschema@._quality_state_final,
    COMBINEFUNC = @extschema@._quality_state_combine,
    SERIALFUNC = @extschema@._quality_state_serialize,
    DESERIALFUNC = @extschema@._quality_state_deserialize,
    PARALLEL = SAFE
);

CREATE FUNCTION @extschema@.window_quality(
    tbl pg_catalog.regclass, time_column pg_catalog.text, "window" pg_catalog.interval, slide pg_catalog.interval DEFAULT NULL,
    columns pg_catalog.text[] DEFAULT NULL, key_column pg_catalog.text DEFAULT NULL,
    "from" pg_catalog.timestamptz DEFAULT NULL, "to" pg_catalog.timestamptz DEFAULT NULL,
    origin pg_catalog.timestamptz DEFAULT '1970-01-01 00:00+00')
RETURNS TABLE (window_start pg_catalog.timestamptz, window_end pg_catalog.timestamptz, rows pg_catalog.int8, duplicates pg_catalog.int8,
               completeness pg_catalog.float8, uniqueness pg_catalog.float8,
               validity pg_catalog.float8, timeliness pg_catalog.float8,
               consistency pg_catalog.float8, outliers pg_catalog.int8, quality_score pg_catalog.float8,
               newest_event pg_catalog.timestamptz)
LANGUAGE c CALLED ON NULL INPUT STABLE
AS 'MODULE_PATHNAME', 'window_quality';
CREATE FUNCTION @extschema@.column_quality(
    tbl pg_catalog.regclass, time_column pg_catalog.text, "window" pg_catalog.interval, slide pg_catalog.interval DEFAULT NULL,
    columns pg_catalog.text[] DEFAULT NULL, key_column pg_catalog.text DEFAULT NULL,
    "from" pg_catalog.timestamptz DEFAULT NULL, "to" pg_catalog.timestamptz DEFAULT NULL,
    origin pg_catalog.timestamptz DEFAULT '1970-01-01 00:00+00')
RETURNS TABLE (window_start pg_catalog.timestamptz, window_end pg_catalog.timestamptz, column_name pg_catalog.text, rows pg_catalog.int8,
               non_null pg_catalog.int8, completeness pg_catalog.float8, distinct_count pg_catalog.int8,
               mean pg_catalog.float8, stddev pg_catalog.float8, min pg_catalog.float8,
               max pg_catalog.float8, p50 pg_catalog.float8, p90 pg_catalog.float8,
               p99 pg_catalog.float8, outliers pg_catalog.int8, outlier_rate pg_catalog.float8)
LANGUAGE c CALLED ON NULL INPUT STABLE
AS 'MODULE_PATHNAME', 'column_quality';
COMMENT ON AGGREGATE @extschema@.quality_state(pg_catalog.timestamptz, "any", VARIADIC "any") IS
    'One quality window''s state over the rows of a group (bytea, versioned); merges exactly with quality_merge.';
COMMENT ON AGGREGATE @extschema@.quality_merge(pg_catalog.bytea) IS
    'Merges quality window states exactly: minute states into the hour''s state, byte for byte.';
COMMENT ON FUNCTION @extschema@.window_quality(pg_catalog.regclass, pg_catalog.text, pg_catalog.interval, pg_catalog.interval, pg_catalog.text[], pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.timestamptz) IS
    'Quality per time window over any table: rows, duplicates, completeness, score (docs/quality.md).';
COMMENT ON FUNCTION @extschema@.column_quality(pg_catalog.regclass, pg_catalog.text, pg_catalog.interval, pg_catalog.interval, pg_catalog.text[], pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz, pg_catalog.timestamptz) IS
    'Quality per time window and column over any table: completeness, distinct count, mean, stddev, quantiles, outliers (docs/quality.md).';

-- ---------------------------------------------------------------------------------------
-- Section: continuous quality windows, alerts (docs/quality.md).
-- ---------------------------------------------------------------------------------------

-- Closed windows: the same metrics as tributary.window_quality and column_quality, plus
-- what only a stream knows; revision counts amendments by late rows. state is the window's
-- quality state, for rolling windows up with tributary.quality_merge.
CREATE TABLE @extschema@.quality_windows (
    stream        text NOT NULL,
    window_start  pg_catalog.timestamptz NOT NULL,
    window_end    pg_catalog.timestamptz NOT NULL,
    revision      integer NOT NULL DEFAULT 0,
    rows          bigint NOT NULL,
    duplicates    bigint NOT NULL,
    completeness  double precision,
    uniqueness    double precision,
    validity      double precision,
    timeliness    double precision,
    consistency   double precision,
    outliers      bigint NOT NULL,
    quality_score double precision,
    newest_event  pg_catalog.timestamptz,
    dead_letters  bigint NOT NULL,
    late_rows     bigint NOT NULL,
    lag_p50       double precision,
    lag_p90       double precision,
    lag_p99       double precision,
    freshness     pg_catalog.interval,
    closed_at     pg_catalog.timestamptz NOT NULL,
    state         pg_catalog.bytea NOT NULL,
    PRIMARY KEY (stream, window_start)
);
ALTER TABLE @extschema@.quality_windows ALTER COLUMN state SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@.quality_windows IS
    'Closed quality windows per stream (tributary.set_quality); amended by late rows (revision).';

CREATE TABLE @extschema@.quality_columns (
    stream         text NOT NULL,
    window_start   pg_catalog.timestamptz NOT NULL,
    window_end     pg_catalog.timestamptz NOT NULL,
    column_name    text NOT NULL,
    revision       integer NOT NULL DEFAULT 0,
    rows           bigint NOT NULL,
    non_null       bigint NOT NULL,
    completeness   double precision,
    distinct_count bigint NOT NULL,
    mean           double precision,
    stddev         double precision,
    min            double precision,
    max            double precision,
    p50            double precision,
    p90            double precision,
    p99            double precision,
    outliers       bigint,
    outlier_rate   double precision,
    PRIMARY KEY (stream, window_start, column_name)
);
COMMENT ON TABLE @extschema@.quality_columns IS
    'Closed quality windows per stream and watched column.';

-- Quality alerts: raised once when a closed window falls short of a threshold, recovered
-- once when one meets them all again.
CREATE TABLE @extschema@.alerts (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    stream         text NOT NULL
                   REFERENCES @extschema@.stream_catalog (name) ON DELETE CASCADE ON UPDATE CASCADE,
    window_start   pg_catalog.timestamptz NOT NULL,
    window_end     pg_catalog.timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('raised', 'recovered')),
    quality_score  double precision,
    failed         jsonb NOT NULL,
    thresholds     jsonb NOT NULL,
    raised_at      pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
    handler_error  text
);
CREATE INDEX alerts_stream_id_idx ON @extschema@.alerts (stream, id);
COMMENT ON TABLE @extschema@.alerts IS
    'Quality alerts per stream: raised and recovered, with the metrics that fell short.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.quality_partials', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.quality_windows', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.quality_columns', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alerts_id_seq', '');

-- Those who may manage a stream see its quality; everyone may read the settings.
ALTER TABLE @extschema@.quality_windows ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.quality_columns ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.quality_partials ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY quality_windows_of_managed_streams ON @extschema@.quality_windows FOR SELECT TO PUBLIC
    USING (@extschema@._may_manage(@extschema@._stream_owner(stream)));
CREATE POLICY quality_columns_of_managed_streams ON @extschema@.quality_columns FOR SELECT TO PUBLIC
    USING (@extschema@._may_manage(@extschema@._stream_owner(stream)));
CREATE POLICY quality_partials_of_managed_streams ON @extschema@.quality_partials FOR SELECT TO PUBLIC
    USING (@extschema@._may_manage(@extschema@._stream_owner(stream)));
CREATE POLICY alerts_of_managed_streams ON @extschema@.alerts FOR SELECT TO PUBLIC
    USING (@extschema@._may_manage(@extschema@._stream_owner(stream)));
GRANT SELECT ON @extschema@.quality_config, @extschema@.quality_windows, @extschema@.quality_columns,
    @extschema@.quality_partials, @extschema@.alerts TO PUBLIC;

CREATE FUNCTION @extschema@.set_quality(
    stream pg_catalog.text, "window" pg_catalog.interval, slide pg_catalog.interval DEFAULT NULL,
    allowed_lateness pg_catalog.interval DEFAULT '0 seconds', columns pg_catalog.text[] DEFAULT NULL,
    thresholds jsonb DEFAULT '{}', weights jsonb DEFAULT NULL,
    on_alert pg_catalog.regprocedure DEFAULT NULL, grace pg_catalog.interval DEFAULT '5 seconds',
    origin pg_catalog.timestamptz DEFAULT '1970-01-01 00:00+00', key_column pg_catalog.text DEFAULT NULL)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_set_quality';
CREATE FUNCTION @extschema@.drop_quality(stream pg_catalog.text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_drop_quality';
CREATE FUNCTION @extschema@.quality_now(stream pg_catalog.text)
RETURNS TABLE (window_start pg_catalog.timestamptz, window_end pg_catalog.timestamptz, rows pg_catalog.int8,
               duplicates pg_catalog.int8, completeness pg_catalog.float8, uniqueness pg_catalog.float8,
               validity pg_catalog.float8, timeliness pg_catalog.float8, consistency pg_catalog.float8,
               outliers pg_catalog.int8, quality_score pg_catalog.float8, newest_event pg_catalog.timestamptz,
               dead_letters pg_catalog.int8, late_rows pg_catalog.int8)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_quality_now';
CREATE FUNCTION @extschema@.close_quality_windows(stream pg_catalog.text)
RETURNS pg_catalog.int4
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_close_quality_windows';
COMMENT ON FUNCTION @extschema@.close_quality_windows(pg_catalog.text) IS
    'Close the stream''s windows the watermark or the wall clock has passed now, as the launcher does every naptime; returns how many closed.';
REVOKE ALL ON FUNCTION @extschema@.set_quality(pg_catalog.text, pg_catalog.interval, pg_catalog.interval,
    pg_catalog.interval, pg_catalog.text[], jsonb, jsonb, pg_catalog.regprocedure, pg_catalog.interval,
    pg_catalog.timestamptz, pg_catalog.text), @extschema@.drop_quality(pg_catalog.text, boolean),
    @extschema@.quality_now(pg_catalog.text), @extschema@.close_quality_windows(pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_quality(pg_catalog.text, pg_catalog.interval, pg_catalog.interval,
    pg_catalog.interval, pg_catalog.text[], jsonb, jsonb, pg_catalog.regprocedure, pg_catalog.interval,
    pg_catalog.timestamptz, pg_catalog.text), @extschema@.drop_quality(pg_catalog.text, boolean),
    @extschema@.quality_now(pg_catalog.text), @extschema@.close_quality_windows(pg_catalog.text) TO PUBLIC;

-- A window's metrics from its state: for windows rolled up with quality_merge.
CREATE FUNCTION @extschema@.quality_metrics(state pg_catalog.bytea,
    OUT rows pg_catalog.int8, OUT duplicates pg_catalog.int8, OUT completeness pg_catalog.float8,
    OUT uniqueness pg_catalog.float8, OUT validity pg_catalog.float8, OUT timeliness pg_catalog.float8,
    OUT consistency pg_catalog.float8, OUT outliers pg_catalog.int8, OUT quality_score pg_catalog.float8,
    OUT newest_event pg_catalog.timestamptz, OUT dead_letters pg_catalog.int8, OUT late_rows pg_catalog.int8)
RETURNS record
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'quality_metrics';

-- ---------------------------------------------------------------------------------------
-- Snapshots per key and NOTIFY fan-out (docs/fanout.md)
-- ---------------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshot_config', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.snapshots', '');

-- Everyone may read the settings; records only through tributary.snapshot(), which applies
-- the caller's privileges on the target and its row-level security.
GRANT SELECT ON @extschema@.snapshot_config TO PUBLIC;

CREATE FUNCTION @extschema@.set_snapshot(stream pg_catalog.text, "order" pg_catalog.text DEFAULT 'source')
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_set_snapshot';
CREATE FUNCTION @extschema@.drop_snapshot(stream pg_catalog.text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_drop_snapshot';
CREATE FUNCTION @extschema@.snapshot(stream pg_catalog.text, key pg_catalog.text DEFAULT NULL)
RETURNS TABLE (key pg_catalog.text, seq pg_catalog.int8, record jsonb,
               updated_at pg_catalog.timestamptz, stream_seq pg_catalog.int8)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'tributary_snapshot';
CREATE FUNCTION @extschema@.snapshot_seq(stream pg_catalog.text)
RETURNS pg_catalog.int8
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'tributary_snapshot_seq';
CREATE FUNCTION @extschema@.set_fanout(stream pg_catalog.text,
    channels pg_catalog.text[] DEFAULT '{stream,key}', payload pg_catalog.text DEFAULT 'full',
    min_interval pg_catalog.interval DEFAULT NULL, heartbeat pg_catalog.interval DEFAULT '5 seconds')
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_set_fanout';
CREATE FUNCTION @extschema@.drop_fanout(stream pg_catalog.text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_drop_fanout';
CREATE FUNCTION @extschema@.fanout_channel(stream pg_catalog.text, key pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.text
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'tributary_fanout_channel';
COMMENT ON FUNCTION @extschema@.fanout_channel(pg_catalog.text, pg_catalog.text) IS
    'The NOTIFY channel of a stream (key NULL) or of one of its keys; names over 63 bytes are shortened by a stable hash (docs/fanout.md).';

-- ingest with message keys: a null payload with a key is a tombstone (deletes the key
-- from the stream's snapshot).
CREATE FUNCTION @extschema@.ingest(name text, payloads text[], keys text[])
RETURNS @extschema@.ingest_result
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_ingest';
CREATE FUNCTION @extschema@.ingest(name text, payloads bytea[], keys text[])
RETURNS @extschema@.ingest_result
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_ingest';
CREATE FUNCTION @extschema@.ingest(name text, payloads jsonb[], keys text[])
RETURNS @extschema@.ingest_result
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tributary_ingest';

REVOKE ALL ON FUNCTION @extschema@.set_snapshot(pg_catalog.text, pg_catalog.text),
    @extschema@.drop_snapshot(pg_catalog.text, boolean),
    @extschema@.snapshot(pg_catalog.text, pg_catalog.text),
    @extschema@.snapshot_seq(pg_catalog.text),
    @extschema@.set_fanout(pg_catalog.text, pg_catalog.text[], pg_catalog.text, pg_catalog.interval, pg_catalog.interval),
    @extschema@.drop_fanout(pg_catalog.text, boolean),
    @extschema@.fanout_channel(pg_catalog.text, pg_catalog.text),
    @extschema@.ingest(text, text[], text[]), @extschema@.ingest(text, bytea[], text[]),
    @extschema@.ingest(text, jsonb[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_snapshot(pg_catalog.text, pg_catalog.text),
    @extschema@.drop_snapshot(pg_catalog.text, boolean),
    @extschema@.snapshot(pg_catalog.text, pg_catalog.text),
    @extschema@.snapshot_seq(pg_catalog.text),
    @extschema@.set_fanout(pg_catalog.text, pg_catalog.text[], pg_catalog.text, pg_catalog.interval, pg_catalog.interval),
    @extschema@.drop_fanout(pg_catalog.text, boolean),
    @extschema@.fanout_channel(pg_catalog.text, pg_catalog.text),
    @extschema@.ingest(text, text[], text[]), @extschema@.ingest(text, bytea[], text[]),
    @extschema@.ingest(text, jsonb[], text[]) TO PUBLIC;
