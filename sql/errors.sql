--
-- errors: every bad call, with its message, detail and hint.
--
-- The ERROR lines in expected/errors.out are the assertions: a call that succeeded, or
-- failed with other words, where it should have failed, shows up as a diff. pg_regress
-- runs each statement in its own transaction, so a failed call cannot leave rows behind
-- (PostgreSQL rolls them back) and no catalog check follows each one. err_unchanged()
-- compares the catalog, the dead letters, the offsets, the targets' rows and the counters
-- with the snapshot taken by the last err_rebase(), and is called only where it can fail:
--   * after failed ingest and replay calls: stream_stats counters live in shared memory,
--     outside the transaction, and must only move when a batch commits;
--   * after statements that succeed and must leave everything as it was (a create
--     followed by its drop, drop_stream with if_exists on a missing stream).
--
CREATE TABLE err_t (
    id      integer PRIMARY KEY,
    ts      timestamptz,
    n       integer,
    body    text,
    raw     bytea,
    doc     jsonb,
    doc_j   json,
    twice   integer GENERATED ALWAYS AS (id * 2) STORED
);
CREATE TABLE err_one (line text);
CREATE VIEW err_view AS SELECT * FROM err_t;
CREATE MATERIALIZED VIEW err_matview AS SELECT 1 AS x;
CREATE SEQUENCE err_seq;

CREATE FUNCTION err_snapshot() RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(' | ',
        (SELECT string_agg(concat_ws(':', name, source, target::text, options::text, key_column,
                                     event_time_column, enabled, config_version), ' ' ORDER BY name)
         FROM tributary.streams),
        (SELECT count(*) FROM tributary.dead_letters),
        (SELECT count(*) FROM tributary.offsets),
        (SELECT count(*) FROM err_t),
        (SELECT count(*) FROM err_one),
        (SELECT string_agg(concat_ws(':', stream, messages, rows, dead_letters, batches), ' ' ORDER BY stream)
         FROM tributary.stream_stats))
$$;
CREATE TABLE err_baseline (snapshot text);
INSERT INTO err_baseline VALUES (err_snapshot());
CREATE FUNCTION err_rebase() RETURNS void LANGUAGE sql AS $$
    UPDATE err_baseline SET snapshot = err_snapshot()
$$;
CREATE FUNCTION err_unchanged() RETURNS boolean LANGUAGE sql AS $$
    SELECT snapshot = err_snapshot() FROM err_baseline
$$;

-- Streams the errors below run against.
SELECT tributary.create_stream('err_json', 'err_t', key => 'id', event_time => 'ts');
SELECT tributary.create_stream('err_csv', 'err_t', 'local', '{"format": "csv", "columns": ["id", "body"]}');
SELECT tributary.create_stream('err_text', 'err_one', 'local', '{"format": "text"}');
SELECT tributary.create_stream('err_bytes', 'err_t', 'local', '{"format": "bytes", "column": "raw"}');
SELECT tributary.create_stream('err_stopped', 'err_t', enabled => false);
SELECT tributary.create_stream('err_kafka', 'err_t', 'kafka', '{"brokers": "localhost:9092", "topic": "t"}',
                               enabled => false);
SELECT err_rebase();

--
-- Unknown streams, for every function that takes a stream name.
--
SELECT tributary.alter_stream('err_nope', '{}');
SELECT tributary.start('err_nope');
SELECT tributary.stop('err_nope');
SELECT tributary.drop_stream('err_nope');
SELECT tributary.drop_stream('err_nope', false);
SELECT tributary.drop_stream('err_nope', NULL);
SELECT * FROM tributary.ingest('err_nope', '{"id": 1}');
SELECT * FROM tributary.ingest('err_nope', ARRAY['{"id": 1}']);
SELECT * FROM tributary.replay_dead_letters('err_nope');
-- ... and a missing stream with if_exists is a quiet no-op
SELECT tributary.drop_stream('err_nope', true);
SELECT err_unchanged();

--
-- Null arguments.
--
SELECT tributary.create_stream(NULL, 'err_t');
SELECT tributary.create_stream('err_new', NULL);
SELECT tributary.create_stream('err_new', 'err_t', NULL);
SELECT tributary.alter_stream(NULL, '{}');
SELECT tributary.alter_stream('err_json', NULL);
SELECT tributary.start(NULL);
SELECT tributary.stop(NULL);
SELECT tributary.drop_stream(NULL);
SELECT tributary.drop_stream(NULL, true);
SELECT * FROM tributary.replay_dead_letters(NULL);
SELECT * FROM tributary.ingest(NULL, '{"id": 1}'::text);

-- NULL payloads, of every payload type, and NULL elements of payload arrays.
SELECT * FROM tributary.ingest('err_json', NULL::text);
SELECT * FROM tributary.ingest('err_json', NULL::bytea);
SELECT * FROM tributary.ingest('err_json', NULL::jsonb);
SELECT * FROM tributary.ingest('err_json', NULL::text[]);
SELECT * FROM tributary.ingest('err_json', ARRAY['{"id": 1}', NULL, '{"id": 3}']);
SELECT * FROM tributary.ingest('err_json', ARRAY[NULL]::bytea[]);
SELECT * FROM tributary.ingest('err_json', ARRAY['{"id": 1}'::jsonb, NULL]);
-- (elements before a NULL one may be parsed first: their counters must not outlive the error)
SELECT err_unchanged();

--
-- Stream names.
--
SELECT tributary.create_stream('', 'err_t');
SELECT tributary.create_stream('Orders', 'err_t');
SELECT tributary.create_stream('orders-v2', 'err_t');
SELECT tributary.create_stream('1orders', 'err_t');
SELECT tributary.create_stream('orders v2', 'err_t');
SELECT tributary.create_stream('örders', 'err_t');
-- 49 characters is one too many; 48 is fine
SELECT tributary.create_stream(repeat('x', 49), 'err_t');
SELECT tributary.create_stream(repeat('x', 48), 'err_t');
SELECT tributary.drop_stream(repeat('x', 48));
SELECT tributary.create_stream('_under_score_9', 'err_t');
SELECT tributary.drop_stream('_under_score_9');
SELECT err_unchanged();

-- A duplicate name, whatever the other arguments.
SELECT tributary.create_stream('err_json', 'err_t');
SELECT tributary.create_stream('err_json', 'err_one', 'kafka', '{"topic": "x"}');

--
-- Sources.
--
SELECT tributary.create_stream('err_new', 'err_t', 'kinesis');
SELECT tributary.create_stream('err_new', 'err_t', 'Kafka');
SELECT tributary.create_stream('err_new', 'err_t', '');

--
-- Targets.
--
SELECT tributary.create_stream('err_new', 'err_view');
SELECT tributary.create_stream('err_new', 'err_matview');
SELECT tributary.create_stream('err_new', 'err_seq');
SELECT tributary.create_stream('err_new', 'err_t_pkey');
-- an OID that names no relation
SELECT tributary.create_stream('err_new', 4294967295::oid::regclass);
-- (a name that does not exist fails in the regclass cast, before tributary is called)
SELECT tributary.create_stream('err_new', 'err_no_such_table');

--
-- Columns named by the stream that the target does not have.
--
SELECT tributary.create_stream('err_new', 'err_t', key => 'nokey');
SELECT tributary.create_stream('err_new', 'err_t', event_time => 'nots');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id", "nocol"]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"overflow": "noflow"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "text", "column": "notext"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "bytes", "column": "nobytes"}');
-- system columns are not columns a stream can use
SELECT tributary.create_stream('err_new', 'err_t', key => 'ctid');
-- column names are case-sensitive identifiers, not folded
SELECT tributary.create_stream('err_new', 'err_t', key => 'ID');

-- Generated columns cannot be written ...
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id", "twice"]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "text", "column": "twice"}');
-- ... but a generated column may be the key (it is only read).
SELECT tributary.create_stream('err_genkey', 'err_t', key => 'twice');
SELECT tributary.drop_stream('err_genkey');
SELECT err_unchanged();

--
-- Columns of the wrong type.
--
SELECT tributary.create_stream('err_new', 'err_t', event_time => 'n');
SELECT tributary.create_stream('err_new', 'err_t', event_time => 'body');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "bytes", "column": "body"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"overflow": "body"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"overflow": "raw"}');
-- json (not only jsonb) is a valid overflow column
SELECT tributary.create_stream('err_jsonflow', 'err_t', 'local', '{"overflow": "doc_j"}');
SELECT tributary.drop_stream('err_jsonflow');
SELECT err_unchanged();

--
-- Formats.
--
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "xml"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "JSON"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": ""}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": 1}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": null}');
-- csv needs "columns"
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv"}');
-- text and bytes need "column" when the target has more than one writable column
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "text"}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"format": "bytes", "topic": "t", "brokers": "b:9092"}');

--
-- Broker sources need to know where to read.
--
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"topic": "t"}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092"}');
SELECT tributary.create_stream('err_new', 'err_t', 'redis', '{"url": "redis://x"}');

--
-- librdkafka checks its own properties when the stream is declared, in its own words;
-- the properties tributary sets itself cannot be overridden.
--
SELECT tributary.create_stream('err_new', 'err_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"no.such.property": "1"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"fetch.wait.max.ms": "soon"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"enable.auto.commit": true}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"fetch.wait.max.ms": {"x": 1}}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": ["a", ""]}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "someday"}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"0": -5}}');
-- metadata columns: known fields, existing columns, fitting types, no clash with the payload
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"partition": "nope"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"leader": "n"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"timestamp": "n"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"headers": "body"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"key": "body", "topic": "body"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "format": "csv", "columns": ["id", "body"], "metadata": {"key": "body"}}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"metadata": {"key": "body"}}');
-- "parallelism" is a whole number of workers from 1 to 32, and "partitions" must be a list
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "parallelism": 0}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "parallelism": 33}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "parallelism": 1.5}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "parallelism": "4"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"parallelism": 2}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": 3}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": [1, 1]}');
-- and the same checks guard alter_stream
SELECT tributary.create_stream('err_kafka_alter', 'err_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "format": "text", "column": "body"}', enabled => false);
SELECT tributary.alter_stream('err_kafka_alter', '{"librdkafka": {"no.such.property": "1"}}');
SELECT options FROM tributary.streams WHERE name = 'err_kafka_alter';
SELECT tributary.drop_stream('err_kafka_alter');

--
-- A temporary table cannot be a target: it dies with the session, the stream does not.
--
CREATE TEMP TABLE err_temp (id int);
SELECT tributary.create_stream('err_new', 'err_temp');
DROP TABLE err_temp;

--
-- Options that do not apply to the stream's source or format.
--
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"topic": "t"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"brokers": "b:9092"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"url": "redis://x"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"group": "g"}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"topic": "t", "url": "redis://x"}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"topic": "t", "stream_key": "k"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"columns": ["id"]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"delimiter": ";"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"column": "body"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id"], "overflow": "doc"}');
SELECT tributary.create_stream('err_new', 'err_one', 'local', '{"format": "text", "delimiter": ","}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batchsize": 10}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"": 1}');

--
-- Invalid option values.
--
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": 0}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": -1}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": 1.5}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": "x"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": "10"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": 1000001}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": 99999999999999999999}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": true}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": null}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_size": [10]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_ms": 0}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"batch_ms": 3600001}');
-- the bounds themselves are valid
SELECT tributary.create_stream('err_bounds', 'err_t', 'local', '{"batch_size": 1000000, "batch_ms": 3600000}');
SELECT tributary.alter_stream('err_bounds', '{"batch_size": 1, "batch_ms": 1}');
SELECT tributary.drop_stream('err_bounds');
SELECT err_unchanged();
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"overflow": ""}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"overflow": 5}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "text", "column": ""}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "text", "column": ["body"]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": "id"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": []}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id", 2]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id", "id"]}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id"], "delimiter": ";;"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id"], "delimiter": "\""}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id"], "delimiter": "\n"}');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '{"format": "csv", "columns": ["id"], "delimiter": ""}');
SELECT tributary.create_stream('err_new', 'err_t', 'kafka', '{"topic": null}');

--
-- Options that are not a JSON object.
--
SELECT tributary.create_stream('err_new', 'err_t', 'local', '[]');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '["format", "json"]');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '"json"');
SELECT tributary.create_stream('err_new', 'err_t', 'local', '1');
SELECT tributary.create_stream('err_new', 'err_t', 'local', 'null');

--
-- alter_stream validates the merged options exactly like create_stream.
--
SELECT tributary.alter_stream('err_json', '[]');
SELECT tributary.alter_stream('err_json', '"x"');
SELECT tributary.alter_stream('err_json', 'null');
SELECT tributary.alter_stream('err_json', '{"batch_size": 0}');
SELECT tributary.alter_stream('err_json', '{"topic": "t"}');
SELECT tributary.alter_stream('err_json', '{"format": "csv"}');
SELECT tributary.alter_stream('err_json', '{"format": "text"}');
SELECT tributary.alter_stream('err_json', '{"format": "xml"}');
SELECT tributary.alter_stream('err_json', '{"overflow": "nope"}');
-- removing a key the format needs
SELECT tributary.alter_stream('err_csv', '{"columns": null}');
SELECT tributary.alter_stream('err_bytes', '{"column": null}');
SELECT tributary.alter_stream('err_kafka', '{"url": "redis://x"}');
-- the first bad key in the merged options is reported, all or nothing
SELECT tributary.alter_stream('err_json', '{"batch_ms": 10, "batch_size": -5}');

--
-- Payloads of a type the stream's format does not take (jsonb is for json streams).
--
SELECT * FROM tributary.ingest('err_csv', '{"id": 1}'::jsonb);
SELECT * FROM tributary.ingest('err_csv', ARRAY['{"id": 1}'::jsonb]);
SELECT * FROM tributary.ingest('err_text', '"a line"'::jsonb);
SELECT * FROM tributary.ingest('err_bytes', '{}'::jsonb);
SELECT err_unchanged();

--
-- A stopped stream takes no messages, and cannot replay.
--
SELECT * FROM tributary.ingest('err_stopped', '{"id": 1}');
SELECT * FROM tributary.ingest('err_stopped', ARRAY['{"id": 1}', '{"id": 2}']);
SELECT err_unchanged();
-- a stream that was running and is stopped
SELECT tributary.stop('err_json');
SELECT err_rebase();
SELECT * FROM tributary.ingest('err_json', '{"id": 1}');
SELECT err_unchanged();
SELECT tributary.start('err_json');
SELECT err_rebase();

--
-- The target changed under a stream: every call that uses the options reports it with
-- the same words as create_stream.
--
CREATE TABLE err_changing (id integer, note text, at timestamptz);
SELECT tributary.create_stream('err_changing', 'err_changing', 'local', '{"format": "csv", "columns": ["id", "note"]}',
                               event_time => 'at');
SELECT err_rebase();
ALTER TABLE err_changing DROP COLUMN note;
SELECT * FROM tributary.ingest('err_changing', '1,x');
SELECT err_unchanged();
SELECT tributary.alter_stream('err_changing', '{"batch_size": 5}');
SELECT tributary.stop('err_changing');
SELECT tributary.start('err_changing');
SELECT tributary.alter_stream('err_changing', '{"columns": ["id"]}');
SELECT tributary.start('err_changing');
SELECT * FROM tributary.ingest('err_changing', '1');
ALTER TABLE err_changing ALTER COLUMN at TYPE text;
SELECT * FROM tributary.ingest('err_changing', '2');
SELECT tributary.drop_stream('err_changing');
-- dropping the target: its OID is in the message, so show it masked
SELECT tributary.create_stream('err_changing', 'err_changing');
DROP TABLE err_changing;
DO $$
DECLARE
    msg text;
    hint text;
BEGIN
    PERFORM tributary.ingest('err_changing', '{"id": 1}');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'ERROR %: %', SQLSTATE, regexp_replace(msg, '[0-9]+', 'N');
    RAISE NOTICE 'HINT: %', hint;
END
$$;
-- a stream whose target is gone can still be dropped
SELECT tributary.drop_stream('err_changing');
SELECT err_rebase();

-- The error of a failed ingest inside a transaction aborts it: nothing is written, and
-- the counters of the ingest that succeeded before it are not applied either.
BEGIN;
SELECT * FROM tributary.ingest('err_json', '{"id": 100}');
SELECT * FROM tributary.ingest('err_csv', '{"id": 1}'::jsonb);
COMMIT;
SELECT err_unchanged();
SELECT count(*) FROM err_t WHERE id = 100;

-- Clean up.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'err\_%' ORDER BY name;
SELECT count(*) AS streams FROM tributary.streams;
DROP VIEW err_view;
DROP MATERIALIZED VIEW err_matview;
DROP SEQUENCE err_seq;
DROP TABLE err_t, err_one, err_baseline;
DROP FUNCTION err_unchanged(), err_rebase(), err_snapshot();
