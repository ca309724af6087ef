--
-- api: create_stream, alter_stream, start, stop, drop_stream and the two views.
--
-- Only deterministic columns are shown: no timestamps, no pids, and no worker state for
-- enabled broker streams (their workers start asynchronously). Broker streams are created
-- stopped, so no real worker (tributary.database is this database) races the test.
--
CREATE TABLE api_events (
    id      integer PRIMARY KEY,
    ts      timestamptz,
    body    text,
    extra   jsonb
);

-- The streams as the catalog view shows them (state only where it is deterministic).
CREATE VIEW api_streams AS
SELECT name, source, target, format, options, key_column, event_time_column, enabled,
       CASE WHEN source = 'local' OR NOT enabled THEN state ELSE '(async)' END AS state,
       config_version,
       owner = current_user::regrole AS owned_by_me,
       last_error
FROM tributary.streams;

-- Positional call with every default: source local, options {}, no key, no event time,
-- enabled.
SELECT tributary.create_stream('api_local', 'api_events');

-- Every source.
SELECT tributary.create_stream('api_kafka', 'api_events', 'kafka',
                               '{"brokers": "localhost:9092", "topic": "events"}', enabled => false);
SELECT tributary.create_stream('api_redis', 'api_events', 'redis',
                               '{"url": "redis://localhost:6379", "stream": "events", "group": "g1"}', enabled => false);
SELECT tributary.create_stream('api_other', 'api_events');

-- Named parameters, in any order; enabled => false creates it stopped.
SELECT tributary.create_stream(
    name       => 'api_named',
    target     => 'public.api_events'::regclass,
    options    => '{"batch_size": 10, "batch_ms": 50, "overflow": "extra"}',
    key        => 'id',
    event_time => 'ts',
    enabled    => false);

-- Named parameters, only the required ones.
SELECT tributary.create_stream(target => 'api_events', name => 'api_minimal');

-- A null options argument means no options.
SELECT tributary.create_stream('api_nullopts', 'api_events', 'local', NULL);

-- A kafka stream created stopped, with every kafka option.
SELECT tributary.create_stream('api_kafka_full', 'api_events', 'kafka',
    '{"brokers": "b1:9092,b2:9092", "topic": "t", "group": "g", "start": "earliest",
      "partitions": [0, 1, 2], "parallelism": 3, "librdkafka": {"client.id": "tributary-test"},
      "format": "json", "batch_size": 500, "batch_ms": 250}',
    enabled => false);

SELECT * FROM api_streams ORDER BY name;

-- The view's columns.
\d tributary.streams
\d tributary.stream_stats

-- stream_stats has one row per stream; local streams have no worker.
SELECT stream, partition, worker_pid, worker_config_version, messages, rows, dead_letters,
       bytes, batches, last_commit IS NULL AS never_committed, lag
FROM tributary.stream_stats
WHERE stream IN ('api_local', 'api_named', 'api_minimal', 'api_nullopts')
ORDER BY stream;
SELECT count(*) = (SELECT count(*) FROM tributary.streams) AS one_row_per_stream
FROM tributary.stream_stats;
-- ... with the stream's state and last error, as tributary.streams shows them.
SELECT count(*) AS state_or_error_differs
FROM tributary.stream_stats st JOIN tributary.streams s ON s.name = st.stream
WHERE st.partition IS NULL
  AND (st.state, st.last_error, st.last_error_at) IS DISTINCT FROM (s.state, s.last_error, s.last_error_at);

--
-- alter_stream: options are merged, a null value removes a key, config_version goes up
-- by one on each call.
--
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
SELECT tributary.alter_stream('api_local', '{"batch_size": 50}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
SELECT tributary.alter_stream('api_local', '{"batch_ms": 20}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
-- overwrite one key, add another
SELECT tributary.alter_stream('api_local', '{"batch_size": 75, "overflow": "extra"}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
-- a null value removes the key; removing a key that is not set is harmless
SELECT tributary.alter_stream('api_local', '{"batch_size": null, "overflow": null, "delimiter": null}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
-- an empty object changes nothing but still counts as a new configuration
SELECT tributary.alter_stream('api_local', '{}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';
-- named parameters
SELECT tributary.alter_stream(options => '{"batch_ms": null}', name => 'api_local');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_local';

-- kafka: the merge is shallow, so a nested object (librdkafka) is replaced as a whole.
SELECT tributary.alter_stream('api_kafka_full',
    '{"topic": "t2", "librdkafka": {"fetch.min.bytes": "1"}, "start": null}');
SELECT options, config_version FROM tributary.streams WHERE name = 'api_kafka_full';

-- A stopped stream can be altered; it stays stopped.
SELECT tributary.alter_stream('api_named', '{"batch_size": 20}');
SELECT options, enabled, state, config_version FROM tributary.streams WHERE name = 'api_named';

-- Changing the format: the new combination is validated as a whole.
SELECT tributary.alter_stream('api_minimal', '{"format": "text", "column": "body"}');
SELECT format, options FROM tributary.streams WHERE name = 'api_minimal';
SELECT tributary.alter_stream('api_minimal', '{"format": null, "column": null}');
SELECT format, options FROM tributary.streams WHERE name = 'api_minimal';

--
-- start and stop. A local stream needs no worker: it is running while enabled.
--
SELECT tributary.stop('api_local');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_local';
-- stopping twice is harmless
SELECT tributary.stop('api_local');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_local';
SELECT tributary.start('api_local');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_local';
SELECT tributary.start('api_local');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_local';
-- start and stop do not change the configuration version
SELECT config_version FROM tributary.streams WHERE name = 'api_local';

SELECT tributary.start(name => 'api_named');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_named';

-- A broker stream that is stopped is 'stopped' at once. (Started and stopped in one
-- transaction: the launcher never sees it enabled, so no worker starts.)
BEGIN;
SELECT tributary.start('api_kafka');
SELECT name, enabled FROM tributary.streams WHERE name = 'api_kafka';
SELECT tributary.stop('api_kafka');
SELECT name, enabled, state FROM tributary.streams WHERE name = 'api_kafka';
COMMIT;

-- Stopping inside a transaction that rolls back changes nothing.
BEGIN;
SELECT tributary.stop('api_local');
SELECT state FROM tributary.streams WHERE name = 'api_local';
ROLLBACK;
SELECT state FROM tributary.streams WHERE name = 'api_local';

--
-- A first ingest through the API (ingest.sql goes into depth).
--
SELECT * FROM tributary.ingest('api_local', '{"id": 1, "body": "hello"}');
SELECT * FROM tributary.ingest('api_local', ARRAY['{"id": 2}', '{"id": "two"}']);
SELECT * FROM api_events ORDER BY id;
SELECT stream, messages, rows, dead_letters, bytes, batches
FROM tributary.stream_stats WHERE stream = 'api_local';
SELECT stream, convert_from(payload, 'UTF8') AS payload, sqlstate
FROM tributary.dead_letters ORDER BY id;

--
-- drop_stream removes the stream, its offsets and its dead letters.
--
-- Positions as workers would store them (written directly here: the superuser can): a
-- Kafka stream's partitions and next offsets, and one of a source whose positions are not
-- numbers, without partitions (as a Redis stream key's last entry id).
INSERT INTO tributary.offsets (stream, source_stream, source_partition, position) VALUES
    ('api_kafka', 'orders', '0', '42'), ('api_kafka', 'orders', '1', '7'),
    ('api_other', 'events', '', '1700000000000-3');
SELECT stream, source_stream, source_partition, position FROM tributary.offsets
ORDER BY stream, source_partition;
-- tributary.kafka_offsets: the Kafka streams' rows, typed; a condition on its numbers is
-- never tried on another source's position, whatever the plan (a hash join scans all of
-- tributary.offsets: a condition on a plain cast would be pushed down to that scan and
-- fail on the position that is not a number)
SELECT stream, topic, partition, next_offset FROM tributary.kafka_offsets ORDER BY stream, partition;
BEGIN;
SET LOCAL enable_nestloop = off;
SET LOCAL enable_mergejoin = off;
SELECT stream, topic, partition, next_offset FROM tributary.kafka_offsets
WHERE partition = 0 AND next_offset > 10;
COMMIT;

SELECT tributary.drop_stream('api_kafka');
SELECT tributary.drop_stream('api_local');
SELECT name FROM tributary.streams ORDER BY name;
SELECT stream, source_partition, position FROM tributary.offsets ORDER BY stream, source_partition;
SELECT count(*) AS dead_letters_of_dropped FROM tributary.dead_letters
WHERE stream IN ('api_kafka', 'api_local');
SELECT count(*) AS stats_of_dropped FROM tributary.stream_stats
WHERE stream IN ('api_kafka', 'api_local');
-- the target table and its rows are not touched
SELECT count(*) FROM api_events;

-- if_exists: a missing stream is a NOTICE, not an error.
SELECT tributary.drop_stream('api_local', if_exists => true);
SELECT tributary.drop_stream('api_never_was', true);
-- if_exists with an existing stream drops it
SELECT tributary.drop_stream('api_other', if_exists => true);
SELECT stream, source_partition, position FROM tributary.offsets ORDER BY stream, source_partition;

-- Dropping inside a transaction that rolls back keeps the stream.
BEGIN;
SELECT tributary.drop_stream('api_named');
SELECT count(*) FROM tributary.streams WHERE name = 'api_named';
ROLLBACK;
SELECT count(*) FROM tributary.streams WHERE name = 'api_named';

-- A name can be used again once dropped; the new stream starts from zero counters.
SELECT tributary.create_stream('api_local', 'api_events', options => '{"batch_size": 5}');
SELECT * FROM api_streams WHERE name = 'api_local';
SELECT stream, messages, rows, dead_letters, bytes, batches
FROM tributary.stream_stats WHERE stream = 'api_local';

-- Clean up everything this file made.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'api\_%' ORDER BY name;
SELECT count(*) AS streams FROM tributary.streams;
DROP VIEW api_streams;
DROP TABLE api_events;
