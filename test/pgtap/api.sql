--
-- api.sql: the contracts of tributary's SQL API: what succeeds, what fails with which
-- SQLSTATE and message, and what ingest returns.
--
-- Runs in one transaction that is rolled back (roles included): nothing is left behind.
-- throws_ok runs its statement in a subtransaction that the error rolls back, so no check
-- that "a failed call changed nothing" follows it: that would test PostgreSQL.
-- Live counters only count committed work, so inside this transaction they stay at 0.
--
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS tributary;

SELECT plan(84);

CREATE TABLE public.tap_t (id integer PRIMARY KEY, v integer CHECK (v > 0), at timestamptz,
                           doc jsonb, raw bytea, body text);
CREATE VIEW public.tap_v AS SELECT * FROM public.tap_t;
CREATE TABLE public.tap_one (line text);
CREATE ROLE tap_plain NOLOGIN;
CREATE ROLE tap_writer NOLOGIN;
CREATE ROLE tap_owner NOLOGIN;
CREATE TABLE public.tap_owned (id integer);
ALTER TABLE public.tap_owned OWNER TO tap_owner;
GRANT INSERT ON public.tap_t TO tap_writer;

--
-- create_stream: every source, defaults, named parameters.
--
SELECT lives_ok($$ SELECT tributary.create_stream('tap_local', 'public.tap_t') $$,
                'create_stream with defaults (local, json, enabled)');
SELECT lives_ok($$ SELECT tributary.create_stream('tap_kafka', 'public.tap_t', 'kafka',
                                                  '{"brokers": "localhost:9092", "topic": "t"}', enabled => false) $$,
                'create_stream for kafka');
SELECT lives_ok($$ SELECT tributary.create_stream('tap_redis', 'public.tap_t', 'redis',
                                                  '{"url": "redis://localhost", "stream": "k"}', enabled => false) $$,
                'create_stream for redis');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_rediss', 'public.tap_t', 'redis',
                                                   '{"url": "rediss://localhost", "stream": "k"}', enabled => false) $$,
                 '0A000', 'stream "tap_rediss" asks for TLS (rediss://), which tributary cannot offer',
                 'create_stream refuses TLS to Redis, which hiredis here cannot do');
SELECT lives_ok($$ SELECT tributary.create_stream(name => 'tap_named', target => 'public.tap_t',
                                                  key => 'id', event_time => 'at', options => '{"overflow": "doc"}') $$,
                'create_stream with named parameters');
SELECT lives_ok($$ SELECT tributary.create_stream('tap_csv', 'public.tap_t', 'local',
                                                  '{"format": "csv", "columns": ["id", "v"]}') $$,
                'create_stream for csv');
SELECT lives_ok($$ SELECT tributary.create_stream('tap_text', 'public.tap_one', 'local', '{"format": "text"}') $$,
                'create_stream for text on a one-column table');
SELECT lives_ok($$ SELECT tributary.create_stream('tap_stopped', 'public.tap_t', enabled => false) $$,
                'create_stream stopped');

SELECT results_eq(
    $$ SELECT name, source, format, key_column, event_time_column, enabled, config_version
       FROM tributary.streams ORDER BY name $$,
    $$ VALUES ('tap_csv', 'local', 'csv', NULL, NULL, true, 1),
              ('tap_kafka', 'kafka', 'json', NULL, NULL, false, 1),
              ('tap_local', 'local', 'json', NULL, NULL, true, 1),
              ('tap_named', 'local', 'json', 'id', 'at', true, 1),
              ('tap_redis', 'redis', 'json', NULL, NULL, false, 1),
              ('tap_stopped', 'local', 'json', NULL, NULL, false, 1),
              ('tap_text', 'local', 'text', NULL, NULL, true, 1) $$,
    'tributary.streams lists the declared streams');
SELECT is((SELECT state FROM tributary.streams WHERE name = 'tap_local'), 'running',
          'an enabled local stream is running');
SELECT is((SELECT state FROM tributary.streams WHERE name = 'tap_stopped'), 'stopped',
          'a disabled stream is stopped');
SELECT is((SELECT owner::text FROM tributary.streams WHERE name = 'tap_local'), current_user::text,
          'the creator owns the stream');
SELECT is((SELECT options FROM tributary.streams WHERE name = 'tap_local'), '{}'::jsonb,
          'options default to {}');

--
-- alter_stream merges options; null removes a key; config_version goes up.
--
SELECT lives_ok($$ SELECT tributary.alter_stream('tap_local', '{"batch_size": 10, "batch_ms": 5}') $$,
                'alter_stream adds options');
SELECT lives_ok($$ SELECT tributary.alter_stream('tap_local', '{"batch_size": 20}') $$,
                'alter_stream changes one option');
SELECT is((SELECT options FROM tributary.streams WHERE name = 'tap_local'), '{"batch_ms": 5, "batch_size": 20}'::jsonb,
          'options are merged');
SELECT lives_ok($$ SELECT tributary.alter_stream('tap_local', '{"batch_ms": null}') $$,
                'alter_stream with a null value');
SELECT is((SELECT options FROM tributary.streams WHERE name = 'tap_local'), '{"batch_size": 20}'::jsonb,
          'a null value removes the key');
SELECT is((SELECT config_version FROM tributary.streams WHERE name = 'tap_local'), 4,
          'config_version counts the changes');
SELECT throws_ok($$ SELECT tributary.alter_stream('tap_local', '{"batch_size": 0}') $$,
                 '22023', 'invalid value for option "batch_size" of stream "tap_local"',
                 'alter_stream validates the merged options');

--
-- start and stop.
--
SELECT lives_ok($$ SELECT tributary.stop('tap_local') $$, 'stop');
SELECT is((SELECT state FROM tributary.streams WHERE name = 'tap_local'), 'stopped', 'stop stops');
SELECT lives_ok($$ SELECT tributary.start('tap_local') $$, 'start');
SELECT is((SELECT state FROM tributary.streams WHERE name = 'tap_local'), 'running', 'start starts');

--
-- The errors of create_stream: SQLSTATE and message.
--
SELECT throws_ok($$ SELECT tributary.create_stream('tap_local', 'public.tap_t') $$,
                 '42710', 'stream "tap_local" already exists', 'duplicate name');
SELECT throws_ok($$ SELECT tributary.create_stream('Tap', 'public.tap_t') $$,
                 '42602', 'invalid stream name "Tap"', 'invalid name');
SELECT throws_ok($$ SELECT tributary.create_stream(NULL, 'public.tap_t') $$,
                 '22004', 'name must not be null', 'null name');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', NULL) $$,
                 '22004', 'target must not be null', 'null target');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_v') $$,
                 '42809', '"tap_v" is not a table', 'a view is not a target');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'kinesis') $$,
                 '22023', 'unknown source "kinesis"', 'unknown source');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', key => 'nope') $$,
                 '42703', 'column "nope" of relation "tap_t" does not exist', 'missing key column');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', event_time => 'v') $$,
                 '42804', 'column "v" of relation "tap_t" has type integer', 'event time column of the wrong type');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"format": "bytes", "column": "body"}') $$,
                 '42804', 'column "body" of relation "tap_t" has type text', 'bytes column of the wrong type');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"overflow": "body"}') $$,
                 '42804', 'column "body" of relation "tap_t" has type text', 'overflow column of the wrong type');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"format": "xml"}') $$,
                 '22023', 'unknown format "xml" for stream "tap_x"', 'unknown format');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"topic": "t"}') $$,
                 '22023', 'unknown option "topic" for stream "tap_x"', 'an option of another source');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"batch_size": 0}') $$,
                 '22023', 'invalid value for option "batch_size" of stream "tap_x"', 'batch_size 0');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"batch_size": 1.5}') $$,
                 '22023', 'invalid value for option "batch_size" of stream "tap_x"', 'batch_size 1.5');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '[]') $$,
                 '22023', 'options of stream "tap_x" must be a JSON object', 'options not an object');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"format": "csv"}') $$,
                 '22023', 'stream "tap_x" needs option "columns"', 'csv without columns');
SELECT throws_ok($$ SELECT tributary.create_stream('tap_x', 'public.tap_t', 'local', '{"format": "text"}') $$,
                 '22023', 'stream "tap_x" needs option "column"', 'text on a multi-column table without column');

--
-- Unknown streams.
--
SELECT throws_ok($$ SELECT tributary.alter_stream('tap_nope', '{}') $$,
                 '42704', 'stream "tap_nope" does not exist', 'alter_stream of an unknown stream');
SELECT throws_ok($$ SELECT tributary.start('tap_nope') $$,
                 '42704', 'stream "tap_nope" does not exist', 'start of an unknown stream');
SELECT throws_ok($$ SELECT tributary.stop('tap_nope') $$,
                 '42704', 'stream "tap_nope" does not exist', 'stop of an unknown stream');
SELECT throws_ok($$ SELECT tributary.drop_stream('tap_nope') $$,
                 '42704', 'stream "tap_nope" does not exist', 'drop_stream of an unknown stream');
SELECT lives_ok($$ SELECT tributary.drop_stream('tap_nope', if_exists => true) $$,
                'drop_stream if_exists of an unknown stream');
SELECT throws_ok($$ SELECT tributary.ingest('tap_nope', '{}'::text) $$,
                 '42704', 'stream "tap_nope" does not exist', 'ingest into an unknown stream');
SELECT throws_ok($$ SELECT tributary.replay_dead_letters('tap_nope') $$,
                 '42704', 'stream "tap_nope" does not exist', 'replay of an unknown stream');

--
-- ingest: results, rows and dead letters.
--
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', ARRAY['{"id": 1, "v": 1}', '{"id": 2, "v": -2}', 'bad']) $$,
    $$ VALUES (1::bigint, 2::bigint) $$,
    'ingest of a batch returns (accepted, dead_lettered)');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', '{"id": 3, "v": 3, "doc": {"a": 1}}'::jsonb) $$,
    $$ VALUES (1::bigint, 0::bigint) $$,
    'ingest of one jsonb message');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', convert_to('{"id": 4, "v": 4}', 'UTF8')) $$,
    $$ VALUES (1::bigint, 0::bigint) $$,
    'ingest of one bytea message');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', '{"id": 4, "v": 44}'::text) $$,
    $$ VALUES (0::bigint, 1::bigint) $$,
    'ingest of one text message that is dead-lettered');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', ARRAY[]::text[]) $$,
    $$ VALUES (0::bigint, 0::bigint) $$,
    'ingest of an empty batch');
SELECT results_eq(
    $$ SELECT id, v, doc FROM public.tap_t ORDER BY id $$,
    $$ VALUES (1, 1, NULL::jsonb), (3, 3, '{"a": 1}'::jsonb), (4, 4, NULL::jsonb) $$,
    'the accepted rows are in the target');
SELECT results_eq(
    $$ SELECT convert_from(payload, 'UTF8') COLLATE "default", sqlstate, source_partition, source_position, attempts
       FROM tributary.dead_letters WHERE stream = 'tap_local' ORDER BY id $$,
    $$ VALUES ('{"id": 2, "v": -2}', '23514', NULL::text, NULL::text, 1),
              ('bad', '22P02', NULL, NULL, 1),
              ('{"id": 4, "v": 44}', '23505', NULL, NULL, 1) $$,
    'the rejected messages are dead letters with their SQLSTATE');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_csv', ARRAY['10,10', '11,"x"', '12']) $$,
    $$ VALUES (1::bigint, 2::bigint) $$,
    'ingest into a csv stream');
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_text', ARRAY['a line', E'two\nlines']) $$,
    $$ VALUES (2::bigint, 0::bigint) $$,
    'ingest into a text stream');
SELECT results_eq(
    $$ SELECT messages, rows, dead_letters, batches FROM tributary.stream_stats WHERE stream = 'tap_local' $$,
    $$ VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint) $$,
    'counters do not count work that is not committed yet');

-- The errors of ingest.
SELECT throws_ok($$ SELECT tributary.ingest('tap_local', NULL::text) $$,
                 '22004', 'payload must not be null', 'null payload');
SELECT throws_ok($$ SELECT tributary.ingest('tap_local', ARRAY['{}', NULL]) $$,
                 '22004', 'payload 2 of the array is null', 'null element of a payload array');
SELECT throws_ok($$ SELECT tributary.ingest('tap_csv', '{"id": 1}'::jsonb) $$,
                 '42804', 'stream "tap_csv" with format csv cannot take a jsonb payload', 'jsonb into a csv stream');
SELECT throws_ok($$ SELECT tributary.ingest('tap_stopped', '{"id": 1}'::text) $$,
                 '55000', 'stream "tap_stopped" is stopped', 'ingest into a stopped stream');

--
-- replay_dead_letters after a fix.
--
ALTER TABLE public.tap_t DROP CONSTRAINT tap_t_v_check;
SELECT results_eq(
    $$ SELECT * FROM tributary.replay_dead_letters('tap_local') $$,
    $$ VALUES (1::bigint, 2::bigint) $$,
    'replay returns (accepted, still dead)');
SELECT results_eq(
    $$ SELECT convert_from(payload, 'UTF8') COLLATE "default", attempts FROM tributary.dead_letters
       WHERE stream = 'tap_local' ORDER BY id $$,
    $$ VALUES ('bad', 2), ('{"id": 4, "v": 44}', 2) $$,
    'replayed dead letters that landed are gone; the others have one attempt more');

--
-- Privileges.
--
SET ROLE tap_plain;
SELECT throws_ok($$ SELECT tributary.create_stream('tap_p', 'public.tap_t') $$,
                 '42501', 'permission denied for table tap_t', 'a plain role without INSERT cannot declare a stream');
SELECT throws_ok($$ SELECT tributary.ingest('tap_local', '{"id": 100}'::text) $$,
                 '42501', 'permission denied for table tap_t', 'ingest needs INSERT on the target');
SELECT throws_ok($$ SELECT count(*) FROM tributary.stream_catalog $$,
                 '42501', 'permission denied for table stream_catalog', 'a plain role cannot read the catalog');
SELECT throws_ok($$ INSERT INTO tributary.dead_letters (stream, payload, error, sqlstate)
                    VALUES ('tap_local', '\x00', 'e', 'XX000') $$,
                 '42501', 'permission denied for table dead_letters', 'a plain role cannot write dead letters');
SELECT is((SELECT count(*)::integer FROM tributary.dead_letters), 0,
          'a plain role sees no dead letters of streams it cannot manage');
SELECT is(tributary._may_manage(tributary._stream_owner('tap_local')), false,
          'a plain role does not manage another''s stream');
RESET ROLE;

SET ROLE tap_writer;
SELECT results_eq(
    $$ SELECT * FROM tributary.ingest('tap_local', '{"id": 100, "v": 1}'::text) $$,
    $$ VALUES (1::bigint, 0::bigint) $$,
    'a role with INSERT can ingest');
SELECT throws_ok($$ SELECT tributary.alter_stream('tap_local', '{}') $$,
                 '42501', 'permission denied to alter stream "tap_local"', 'INSERT does not allow alter_stream');
SELECT throws_ok($$ SELECT tributary.stop('tap_local') $$,
                 '42501', 'permission denied to stop stream "tap_local"', 'INSERT does not allow stop');
SELECT throws_ok($$ SELECT tributary.drop_stream('tap_local') $$,
                 '42501', 'permission denied to drop stream "tap_local"', 'INSERT does not allow drop_stream');
RESET ROLE;

SET ROLE tap_owner;
SELECT lives_ok($$ SELECT tributary.create_stream('tap_owned', 'public.tap_owned') $$,
                'the owner of a table declares a stream on it');
SELECT lives_ok($$ SELECT tributary.stop('tap_owned') $$, 'and manages it');
RESET ROLE;

-- Secrets are masked for roles that are not admins.
SELECT lives_ok($$ SELECT tributary.alter_stream('tap_kafka', '{"librdkafka": {"sasl.password": "s3cret", "client.id": "x"}}') $$,
                'librdkafka options on a kafka stream');
SET ROLE tap_plain;
SELECT is((SELECT options FROM tributary.streams WHERE name = 'tap_kafka'), NULL,
          'a plain role does not see the options of a stream it does not manage');
RESET ROLE;
SELECT is((SELECT tributary._redact_options(options) -> 'librdkafka' FROM tributary.stream_catalog WHERE name = 'tap_kafka'),
          '{"client.id": "x", "sasl.password": "********"}'::jsonb, 'secrets are masked for those who are not admins');
SELECT is((SELECT options -> 'librdkafka' ->> 'sasl.password' FROM tributary.streams WHERE name = 'tap_kafka'),
          's3cret', 'a superuser sees them');

--
-- drop_stream takes the stream's dead letters and offsets with it.
--
INSERT INTO tributary.offsets (stream, source_stream, source_partition, position) VALUES ('tap_local', 't', '0', '5');
SELECT lives_ok($$ SELECT tributary.drop_stream('tap_local') $$, 'drop_stream');
SELECT is((SELECT count(*)::integer FROM tributary.dead_letters WHERE stream = 'tap_local'), 0,
          'its dead letters are gone');
SELECT is((SELECT count(*)::integer FROM tributary.offsets WHERE stream = 'tap_local'), 0,
          'its offsets are gone');
SELECT lives_ok($$ SELECT tributary.drop_stream('tap_local', true) $$, 'drop_stream if_exists of a dropped stream');

SELECT * FROM finish();
ROLLBACK;
