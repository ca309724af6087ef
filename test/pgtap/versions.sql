--
-- versions.sql: this library serves the SQL objects of an older version until ALTER
-- EXTENSION UPDATE. 0.1.0 declared _stream_counters and _partition_counters with one
-- column fewer each (no "workers", no "worker_pid") under the same C symbols as 0.2.0;
-- the library answers in the shape the declaration asks for, so 0.1.0's streams and
-- stream_stats views keep showing live counters (before, both raised "declared with 10
-- columns, but the tributary library returns 11"). Dead letters go to 0.1.0's columns
-- (topic, partition integer, source_offset bigint; text since 0.3.0) and replay reads
-- them back from there.
--
-- Not one rolled-back transaction: counters reach shared memory only when a transaction
-- commits. The extension is dropped before and after, so other files still create the
-- default version.
--
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
DROP EXTENSION IF EXISTS tributary CASCADE;
CREATE EXTENSION tributary VERSION '0.1.0';
CREATE TABLE public.versions_events (id bigint);
INSERT INTO tributary.stream_catalog (name, target, source, owner)
VALUES ('versions_local', 'public.versions_events', 'local', current_user::regrole);
\o /dev/null
SELECT tributary.ingest('versions_local', '{"id": 1}'::jsonb);
SELECT tributary.ingest('versions_local', '{"id": 2}'::jsonb);
SELECT tributary.ingest('versions_local', '{"id": "two"}'::jsonb);
\o

BEGIN;
SELECT plan(8);

SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'tributary'), '0.1.0',
          'the extension is at 0.1.0, with this library');
SELECT is((SELECT count(*) FROM public.versions_events), 2::bigint, 'two messages were ingested');
SELECT is((SELECT state FROM tributary.streams WHERE name = 'versions_local'), 'running',
          '0.1.0''s tributary.streams works');
SELECT results_eq(
    $$SELECT messages, rows, dead_letters, batches, bytes > 0, worker_pid IS NULL,
             worker_config_version IS NULL, last_commit IS NOT NULL
      FROM tributary.stream_stats WHERE stream = 'versions_local'$$,
    $$VALUES (3::bigint, 2::bigint, 1::bigint, 3::bigint, true, true, true, true)$$,
    '0.1.0''s tributary.stream_stats shows each counter in its own column');
SELECT is((SELECT count(*) FROM tributary._partition_counters()), 0::bigint,
          '0.1.0''s _partition_counters works');
SELECT results_eq(
    $$SELECT topic, partition, source_offset, sqlstate, attempts FROM tributary.dead_letters$$,
    $$VALUES (NULL::text, NULL::integer, NULL::bigint, '22P02'::text, 1)$$,
    'a rejected message is a dead letter in 0.1.0''s tributary.dead_letters');
SELECT results_eq(
    $$SELECT accepted, dead_lettered FROM tributary.replay_dead_letters('versions_local')$$,
    $$VALUES (0::bigint, 1::bigint)$$,
    'replay reads it from 0.1.0''s tributary.dead_letters');
SELECT is((SELECT attempts FROM tributary.dead_letters), 2, 'and records the attempt there');

SELECT * FROM finish();
ROLLBACK;

DROP TABLE public.versions_events;
DROP EXTENSION tributary CASCADE;
