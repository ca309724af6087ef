--
-- catalog.sql: the shape of tributary's SQL surface, its privileges and its packaging.
--
-- Runs in one transaction that is rolled back: it creates the extension if needed and
-- leaves nothing behind.
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

SELECT plan(196);

-- The extension and its schema.

SELECT has_extension('tributary');
SELECT has_schema('tributary');
SELECT is((SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'tributary'), 'tributary',
          'the extension lives in schema tributary');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'tributary'), false,
          'the extension is not relocatable');
SELECT has_role('tributary_admin');
SELECT is((SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = 'tributary_admin'), false,
          'tributary_admin is a group role: no login, not a superuser');

-- Tables, views and the ingest_result type, with every column and its type.
SELECT tables_are('tributary', ARRAY['stream_catalog', 'offsets', 'dead_letters']);
SELECT views_are('tributary', ARRAY['streams', 'stream_stats']);
SELECT has_table('tributary', 'stream_catalog', 'table tributary.stream_catalog exists');
SELECT columns_are('tributary', 'stream_catalog', ARRAY['id', 'name', 'target', 'source', 'options', 'key_column', 'event_time_column', 'enabled', 'config_version', 'owner', 'last_error', 'last_error_at', 'created_at', 'failed', 'waiting']::name[]);
SELECT col_type_is('tributary', 'stream_catalog', 'id', 'integer', 'stream_catalog.id is integer');
SELECT col_type_is('tributary', 'stream_catalog', 'name', 'text', 'stream_catalog.name is text');
SELECT col_type_is('tributary', 'stream_catalog', 'target', 'regclass', 'stream_catalog.target is regclass');
SELECT col_type_is('tributary', 'stream_catalog', 'source', 'text', 'stream_catalog.source is text');
SELECT col_type_is('tributary', 'stream_catalog', 'options', 'jsonb', 'stream_catalog.options is jsonb');
SELECT col_type_is('tributary', 'stream_catalog', 'key_column', 'text', 'stream_catalog.key_column is text');
SELECT col_type_is('tributary', 'stream_catalog', 'event_time_column', 'text', 'stream_catalog.event_time_column is text');
SELECT col_type_is('tributary', 'stream_catalog', 'enabled', 'boolean', 'stream_catalog.enabled is boolean');
SELECT col_type_is('tributary', 'stream_catalog', 'config_version', 'integer', 'stream_catalog.config_version is integer');
SELECT col_type_is('tributary', 'stream_catalog', 'owner', 'regrole', 'stream_catalog.owner is regrole');
SELECT col_type_is('tributary', 'stream_catalog', 'last_error', 'text', 'stream_catalog.last_error is text');
SELECT col_type_is('tributary', 'stream_catalog', 'last_error_at', 'timestamp with time zone', 'stream_catalog.last_error_at is timestamp with time zone');
SELECT col_type_is('tributary', 'stream_catalog', 'created_at', 'timestamp with time zone', 'stream_catalog.created_at is timestamp with time zone');
SELECT has_table('tributary', 'offsets', 'table tributary.offsets exists');
SELECT columns_are('tributary', 'offsets', ARRAY['stream', 'topic', 'partition', 'next_offset', 'updated_at']::name[]);
SELECT col_type_is('tributary', 'offsets', 'stream', 'text', 'offsets.stream is text');
SELECT col_type_is('tributary', 'offsets', 'topic', 'text', 'offsets.topic is text');
SELECT col_type_is('tributary', 'offsets', 'partition', 'integer', 'offsets.partition is integer');
SELECT col_type_is('tributary', 'offsets', 'next_offset', 'bigint', 'offsets.next_offset is bigint');
SELECT col_type_is('tributary', 'offsets', 'updated_at', 'timestamp with time zone', 'offsets.updated_at is timestamp with time zone');
SELECT has_table('tributary', 'dead_letters', 'table tributary.dead_letters exists');
SELECT columns_are('tributary', 'dead_letters', ARRAY['id', 'stream', 'topic', 'partition', 'source_offset', 'payload', 'message_key', 'message_time', 'headers', 'error', 'sqlstate', 'detail', 'attempts', 'failed_at']::name[]);
SELECT col_type_is('tributary', 'dead_letters', 'message_key', 'bytea', 'dead_letters.message_key is bytea');
SELECT col_type_is('tributary', 'dead_letters', 'message_time', 'timestamp with time zone', 'dead_letters.message_time is timestamptz');
SELECT col_type_is('tributary', 'dead_letters', 'headers', 'jsonb', 'dead_letters.headers is jsonb');
SELECT col_type_is('tributary', 'dead_letters', 'topic', 'text', 'dead_letters.topic is text');
SELECT col_type_is('tributary', 'dead_letters', 'id', 'bigint', 'dead_letters.id is bigint');
SELECT col_type_is('tributary', 'dead_letters', 'stream', 'text', 'dead_letters.stream is text');
SELECT col_type_is('tributary', 'dead_letters', 'partition', 'integer', 'dead_letters.partition is integer');
SELECT col_type_is('tributary', 'dead_letters', 'source_offset', 'bigint', 'dead_letters.source_offset is bigint');
SELECT col_type_is('tributary', 'dead_letters', 'payload', 'bytea', 'dead_letters.payload is bytea');
SELECT col_type_is('tributary', 'dead_letters', 'error', 'text', 'dead_letters.error is text');
SELECT col_type_is('tributary', 'dead_letters', 'sqlstate', 'text', 'dead_letters.sqlstate is text');
SELECT col_type_is('tributary', 'dead_letters', 'detail', 'text', 'dead_letters.detail is text');
SELECT col_type_is('tributary', 'dead_letters', 'attempts', 'integer', 'dead_letters.attempts is integer');
SELECT col_type_is('tributary', 'dead_letters', 'failed_at', 'timestamp with time zone', 'dead_letters.failed_at is timestamp with time zone');
SELECT has_view('tributary', 'streams', 'view tributary.streams exists');
SELECT columns_are('tributary', 'streams', ARRAY['name', 'source', 'target', 'format', 'options', 'key_column', 'event_time_column', 'enabled', 'state', 'worker_pid', 'workers', 'config_version', 'owner', 'last_error', 'last_error_at', 'created_at']::name[]);
SELECT col_type_is('tributary', 'streams', 'name', 'text', 'streams.name is text');
SELECT col_type_is('tributary', 'streams', 'source', 'text', 'streams.source is text');
SELECT col_type_is('tributary', 'streams', 'target', 'regclass', 'streams.target is regclass');
SELECT col_type_is('tributary', 'streams', 'format', 'text', 'streams.format is text');
SELECT col_type_is('tributary', 'streams', 'options', 'jsonb', 'streams.options is jsonb');
SELECT col_type_is('tributary', 'streams', 'key_column', 'text', 'streams.key_column is text');
SELECT col_type_is('tributary', 'streams', 'event_time_column', 'text', 'streams.event_time_column is text');
SELECT col_type_is('tributary', 'streams', 'enabled', 'boolean', 'streams.enabled is boolean');
SELECT col_type_is('tributary', 'streams', 'state', 'text', 'streams.state is text');
SELECT col_type_is('tributary', 'streams', 'worker_pid', 'integer', 'streams.worker_pid is integer');
SELECT col_type_is('tributary', 'streams', 'workers', 'integer', 'streams.workers is integer');
SELECT col_type_is('tributary', 'streams', 'config_version', 'integer', 'streams.config_version is integer');
SELECT col_type_is('tributary', 'streams', 'owner', 'regrole', 'streams.owner is regrole');
SELECT col_type_is('tributary', 'streams', 'last_error', 'text', 'streams.last_error is text');
SELECT col_type_is('tributary', 'streams', 'last_error_at', 'timestamp with time zone', 'streams.last_error_at is timestamp with time zone');
SELECT col_type_is('tributary', 'streams', 'created_at', 'timestamp with time zone', 'streams.created_at is timestamp with time zone');
SELECT has_view('tributary', 'stream_stats', 'view tributary.stream_stats exists');
SELECT columns_are('tributary', 'stream_stats', ARRAY['stream', 'topic', 'partition', 'worker_pid', 'worker_config_version', 'worker_started_at', 'messages', 'rows', 'dead_letters', 'bytes', 'batches', 'last_commit', 'current_offset', 'high_watermark', 'lag', 'messages_per_sec', 'state', 'last_error', 'last_error_at']::name[]);
SELECT col_type_is('tributary', 'stream_stats', 'topic', 'text', 'stream_stats.topic is text');
SELECT col_type_is('tributary', 'stream_stats', 'current_offset', 'bigint', 'stream_stats.current_offset is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'high_watermark', 'bigint', 'stream_stats.high_watermark is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'messages_per_sec', 'double precision', 'stream_stats.messages_per_sec is double precision');
SELECT col_type_is('tributary', 'stream_stats', 'stream', 'text', 'stream_stats.stream is text');
SELECT col_type_is('tributary', 'stream_stats', 'partition', 'integer', 'stream_stats.partition is integer');
SELECT col_type_is('tributary', 'stream_stats', 'worker_pid', 'integer', 'stream_stats.worker_pid is integer');
SELECT col_type_is('tributary', 'stream_stats', 'worker_config_version', 'integer', 'stream_stats.worker_config_version is integer');
SELECT col_type_is('tributary', 'stream_stats', 'worker_started_at', 'timestamp with time zone', 'stream_stats.worker_started_at is timestamp with time zone');
SELECT col_type_is('tributary', 'stream_stats', 'messages', 'bigint', 'stream_stats.messages is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'rows', 'bigint', 'stream_stats.rows is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'state', 'text', 'stream_stats.state is text');
SELECT col_type_is('tributary', 'stream_stats', 'last_error', 'text', 'stream_stats.last_error is text');
SELECT col_type_is('tributary', 'stream_stats', 'last_error_at', 'timestamp with time zone', 'stream_stats.last_error_at is timestamp with time zone');
SELECT col_type_is('tributary', 'stream_stats', 'dead_letters', 'bigint', 'stream_stats.dead_letters is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'bytes', 'bigint', 'stream_stats.bytes is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'batches', 'bigint', 'stream_stats.batches is bigint');
SELECT col_type_is('tributary', 'stream_stats', 'last_commit', 'timestamp with time zone', 'stream_stats.last_commit is timestamp with time zone');
SELECT col_type_is('tributary', 'stream_stats', 'lag', 'bigint', 'stream_stats.lag is bigint');
SELECT has_composite('tributary', 'ingest_result', 'type tributary.ingest_result exists');
SELECT columns_are('tributary', 'ingest_result', ARRAY['accepted', 'dead_lettered']::name[]);
SELECT col_type_is('tributary', 'ingest_result', 'accepted', 'bigint', 'ingest_result.accepted is bigint');
SELECT col_type_is('tributary', 'ingest_result', 'dead_lettered', 'bigint', 'ingest_result.dead_lettered is bigint');

-- Keys and constraints of the tables.
SELECT col_is_pk('tributary', 'stream_catalog', 'id', 'stream_catalog.id is the primary key');
SELECT col_is_unique('tributary', 'stream_catalog', 'name', 'stream names are unique');
SELECT col_is_pk('tributary', 'offsets', ARRAY['stream', 'topic', 'partition']::name[], 'offsets are keyed by stream, topic and partition');
SELECT col_is_pk('tributary', 'dead_letters', 'id', 'dead_letters.id is the primary key');
SELECT fk_ok('tributary', 'offsets', 'stream', 'tributary', 'stream_catalog', 'name');
SELECT fk_ok('tributary', 'dead_letters', 'stream', 'tributary', 'stream_catalog', 'name');
SELECT set_eq(
    $$ SELECT conrelid::regclass::text FROM pg_constraint
       WHERE contype = 'f' AND confrelid = 'tributary.stream_catalog'::regclass AND confdeltype = 'c' $$,
    ARRAY['tributary.offsets', 'tributary.dead_letters'],
    'offsets and dead letters go with their stream (ON DELETE CASCADE)');
SELECT has_index('tributary', 'dead_letters', 'dead_letters_stream_id_idx', ARRAY['stream', 'id']::name[]);
SELECT col_not_null('tributary', 'stream_catalog', 'name', 'stream_catalog.name is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'target', 'stream_catalog.target is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'source', 'stream_catalog.source is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'options', 'stream_catalog.options is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'enabled', 'stream_catalog.enabled is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'config_version', 'stream_catalog.config_version is NOT NULL');
SELECT col_not_null('tributary', 'stream_catalog', 'owner', 'stream_catalog.owner is NOT NULL');

-- The functions: exactly these, with these signatures and return types.
SELECT functions_are('tributary', ARRAY['_is_admin', '_may_manage', '_partition_counters', '_redact_options', '_stream_counters', '_stream_owner', 'alter_stream', 'alter_stream_owner', 'create_stream', 'drop_stream', 'ingest', 'replay_dead_letters', 'start', 'stop']::name[]);
SELECT has_function('tributary', 'create_stream', ARRAY['text', 'regclass', 'text', 'jsonb', 'text', 'text', 'boolean']::name[]);
SELECT function_returns('tributary', 'create_stream', ARRAY['text', 'regclass', 'text', 'jsonb', 'text', 'text', 'boolean']::name[], 'void');
SELECT has_function('tributary', 'alter_stream', ARRAY['text', 'jsonb']::name[]);
SELECT function_returns('tributary', 'alter_stream', ARRAY['text', 'jsonb']::name[], 'void');
SELECT has_function('tributary', 'start', ARRAY['text']::name[]);
SELECT function_returns('tributary', 'start', ARRAY['text']::name[], 'void');
SELECT has_function('tributary', 'stop', ARRAY['text']::name[]);
SELECT function_returns('tributary', 'stop', ARRAY['text']::name[], 'void');
SELECT has_function('tributary', 'drop_stream', ARRAY['text', 'boolean']::name[]);
SELECT function_returns('tributary', 'drop_stream', ARRAY['text', 'boolean']::name[], 'void');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'text']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'text']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'bytea']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'bytea']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'jsonb']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'jsonb']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'text[]']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'text[]']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'bytea[]']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'bytea[]']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'ingest', ARRAY['text', 'jsonb[]']::name[]);
SELECT function_returns('tributary', 'ingest', ARRAY['text', 'jsonb[]']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', 'replay_dead_letters', ARRAY['text']::name[]);
SELECT function_returns('tributary', 'replay_dead_letters', ARRAY['text']::name[], 'tributary.ingest_result');
SELECT has_function('tributary', '_is_admin', ARRAY[]::name[]);
SELECT function_returns('tributary', '_is_admin', ARRAY[]::name[], 'boolean');
SELECT has_function('tributary', '_stream_owner', ARRAY['text']::name[]);
SELECT function_returns('tributary', '_stream_owner', ARRAY['text']::name[], 'oid');
SELECT has_function('tributary', '_redact_options', ARRAY['jsonb']::name[]);
SELECT function_returns('tributary', '_redact_options', ARRAY['jsonb']::name[], 'jsonb');
SELECT has_function('tributary', '_stream_counters', ARRAY[]::name[]);
SELECT has_function('tributary', '_partition_counters', ARRAY[]::name[]);
SELECT function_privs_are('tributary', '_partition_counters', ARRAY[]::name[], 'public', ARRAY['EXECUTE']);
SELECT function_returns('tributary', '_stream_counters', ARRAY[]::name[], 'setof record');
SELECT is((SELECT pg_get_function_arguments('tributary.create_stream(text,regclass,text,jsonb,text,text,boolean)'::regprocedure)),
          'name text, target regclass, source text DEFAULT ''local''::text, options jsonb DEFAULT ''{}''::jsonb, key text DEFAULT NULL::text, event_time text DEFAULT NULL::text, enabled boolean DEFAULT true',
          'create_stream parameter names and defaults');
SELECT is((SELECT pg_get_function_arguments('tributary.drop_stream(text,boolean)'::regprocedure)),
          'name text, if_exists boolean DEFAULT false',
          'drop_stream parameter names and defaults');
SELECT is((SELECT pg_get_function_arguments('tributary.alter_stream(text,jsonb)'::regprocedure)),
          'name text, options jsonb', 'alter_stream parameter names');
SELECT set_eq(
    $$ SELECT DISTINCT pg_get_function_arguments(oid) FROM pg_proc
       WHERE pronamespace = 'tributary'::regnamespace AND proname = 'ingest' $$,
    ARRAY['name text, payload text', 'name text, payload bytea', 'name text, payload jsonb',
          'name text, payloads text[]', 'name text, payloads bytea[]', 'name text, payloads jsonb[]'],
    'ingest parameter names: payload for one message, payloads for an array');

-- Privileges. PUBLIC reads the views and offsets, reads and deletes dead letters (RLS
-- filters them), and never touches the catalog; tributary_admin also reads the catalog.
SELECT table_privs_are('tributary', 'stream_catalog', 'public', ARRAY[]::name[]);
SELECT table_privs_are('tributary', 'stream_catalog', 'tributary_admin', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'offsets', 'public', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'offsets', 'tributary_admin', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'dead_letters', 'public', ARRAY['DELETE', 'SELECT']::name[]);
SELECT table_privs_are('tributary', 'dead_letters', 'tributary_admin', ARRAY['DELETE', 'SELECT']::name[]);
SELECT table_privs_are('tributary', 'streams', 'public', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'streams', 'tributary_admin', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'stream_stats', 'public', ARRAY['SELECT']::name[]);
SELECT table_privs_are('tributary', 'stream_stats', 'tributary_admin', ARRAY['SELECT']::name[]);
SELECT sequence_privs_are('tributary', 'stream_catalog_id_seq', 'public', ARRAY[]::name[]);
SELECT sequence_privs_are('tributary', 'dead_letters_id_seq', 'public', ARRAY[]::name[]);
SELECT schema_privs_are('tributary', 'public', ARRAY['USAGE']);
SELECT function_privs_are('tributary', 'create_stream', ARRAY['text', 'regclass', 'text', 'jsonb', 'text', 'text', 'boolean']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'alter_stream', ARRAY['text', 'jsonb']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'start', ARRAY['text']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'stop', ARRAY['text']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'drop_stream', ARRAY['text', 'boolean']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'text']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'bytea']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'jsonb']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'text[]']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'bytea[]']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'jsonb[]']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'replay_dead_letters', ARRAY['text']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', '_is_admin', ARRAY[]::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', '_stream_owner', ARRAY['text']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', '_redact_options', ARRAY['jsonb']::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', '_stream_counters', ARRAY[]::name[], 'public', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'create_stream', ARRAY['text', 'regclass', 'text', 'jsonb', 'text', 'text', 'boolean']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'alter_stream', ARRAY['text', 'jsonb']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'start', ARRAY['text']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'stop', ARRAY['text']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'drop_stream', ARRAY['text', 'boolean']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'text']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'bytea']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'jsonb']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'text[]']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'bytea[]']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'ingest', ARRAY['text', 'jsonb[]']::name[], 'tributary_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('tributary', 'replay_dead_letters', ARRAY['text']::name[], 'tributary_admin', ARRAY['EXECUTE']);

-- SECURITY DEFINER functions pin a safe search_path.
SELECT isnt_empty(
    $$ SELECT oid FROM pg_proc WHERE pronamespace = 'tributary'::regnamespace AND prosecdef $$,
    'there are SECURITY DEFINER functions to check');
SELECT is_empty(
    $$ SELECT oid::regprocedure FROM pg_proc
       WHERE pronamespace = 'tributary'::regnamespace AND prosecdef
         AND NOT EXISTS (SELECT FROM unnest(proconfig) c WHERE c LIKE 'search\_path=%') $$,
    'every SECURITY DEFINER function in tributary sets search_path');
SELECT is_empty(
    $$ SELECT oid::regprocedure FROM pg_proc, unnest(proconfig) c
       WHERE pronamespace = 'tributary'::regnamespace AND prosecdef AND c LIKE 'search\_path=%'
         AND c NOT IN ('search_path=pg_catalog, pg_temp', 'search_path=pg_catalog,pg_temp') $$,
    'their search_path is pg_catalog, then pg_temp last');

-- Everything in the schema belongs to the extension.
SELECT is_empty(
    $$ SELECT c.oid::regclass FROM pg_class c
       WHERE c.relnamespace = 'tributary'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                           AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') $$,
    'every table, view and sequence of the schema is a member of the extension');
SELECT is_empty(
    $$ SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.pronamespace = 'tributary'::regnamespace
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                           AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') $$,
    'every function of the schema is a member of the extension');
SELECT is_empty(
    $$ SELECT t.oid::regtype FROM pg_type t
       WHERE t.typnamespace = 'tributary'::regnamespace AND t.typcategory <> 'A'
         AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
         AND NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid
                           AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') $$,
    'every free-standing type of the schema is a member of the extension');
SELECT is((SELECT nspowner = (SELECT extowner FROM pg_extension WHERE extname = 'tributary')
           FROM pg_namespace WHERE nspname = 'tributary'), true,
          'the schema belongs to the extension''s owner');

-- The tables with user data are dumped by pg_dump (pg_extension_config_dump).
SELECT set_eq(
    $$ SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'tributary' $$,
    ARRAY['tributary.stream_catalog', 'tributary.stream_catalog_id_seq', 'tributary.offsets',
          'tributary.dead_letters', 'tributary.dead_letters_id_seq'],
    'config tables and their sequences are registered with pg_extension_config_dump');

-- Row-level security on dead letters.
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'tributary.dead_letters'::regclass), true,
          'row-level security is enabled on tributary.dead_letters');
SELECT policies_are('tributary', 'dead_letters', ARRAY['dead_letters_of_managed_streams']);
SELECT policy_cmd_is('tributary', 'dead_letters', 'dead_letters_of_managed_streams'::name, 'all',
                     'the dead letters policy covers every command');
-- (policy_roles_are cannot name PUBLIC, which is role OID 0 in pg_policy)
SELECT is((SELECT polroles FROM pg_policy
           WHERE polrelid = 'tributary.dead_letters'::regclass AND polname = 'dead_letters_of_managed_streams'),
          ARRAY[0]::oid[], 'the dead letters policy applies to PUBLIC');

SELECT * FROM finish();
ROLLBACK;
