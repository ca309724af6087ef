--
-- catalog.sql: the privileges and the packaging of tributary's SQL objects.
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

SELECT plan(32);

-- The install script's objects, columns, types, keys and signatures are not restated
-- here: the upgrade test compares every definition of a fresh install with an upgraded
-- one, and api.sql and the regress tests exercise them. What is checked here is what a
-- wrong GRANT, a missing REVOKE or a forgotten option in an install or upgrade script
-- would silently get wrong: privileges, SECURITY DEFINER functions, extension
-- membership, pg_dump registrations and row-level security.

SELECT is((SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = 'tributary_admin'), false,
          'tributary_admin is a group role: no login, not a superuser');

-- Privileges. PUBLIC reads the views and offsets (typed for Kafka streams too), reads and
-- deletes dead letters (RLS filters them), never touches the catalog and cannot create in
-- the schema; tributary_admin also reads the catalog. Nobody but the extension's owner
-- writes.
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
SELECT table_privs_are('tributary', 'kafka_offsets', 'public', ARRAY['SELECT']::name[]);
SELECT sequence_privs_are('tributary', 'stream_catalog_id_seq', 'public', ARRAY[]::name[]);
SELECT sequence_privs_are('tributary', 'dead_letters_id_seq', 'public', ARRAY[]::name[]);
SELECT schema_privs_are('tributary', 'public', ARRAY['USAGE']);

-- Exactly the intended functions are SECURITY DEFINER, and they pin a safe search_path.
SELECT set_eq(
    $$ SELECT oid::regprocedure::text FROM pg_proc
       WHERE pronamespace = 'tributary'::regnamespace AND prosecdef $$,
    ARRAY['tributary._stream_owner(text)'],
    'the only SECURITY DEFINER function is _stream_owner (the dead-letter policy reads the catalog)');
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
          'tributary.dead_letters', 'tributary.dead_letters_id_seq', 'tributary.quality_config',
          'tributary.quality_partials', 'tributary.quality_windows', 'tributary.quality_columns',
          'tributary.alerts', 'tributary.alerts_id_seq', 'tributary.snapshot_config',
          'tributary.snapshots'],
    'config tables and their sequences are registered with pg_extension_config_dump');

-- Every aggregate can run in parallel and merge partial states: the quality metrics rely on
-- the same aggregate giving the same result serially, in parallel and batch by batch.
SELECT isnt_empty(
    $$ SELECT aggfnoid FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
       WHERE p.pronamespace = 'tributary'::regnamespace $$,
    'there are aggregates to check');
SELECT is_empty(
    $$ SELECT a.aggfnoid::regprocedure FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
       WHERE p.pronamespace = 'tributary'::regnamespace
         AND (p.proparallel <> 's' OR a.aggcombinefn = 0
              OR (a.aggtranstype = 'internal'::regtype AND (a.aggserialfn = 0 OR a.aggdeserialfn = 0))) $$,
    'every aggregate is parallel safe with a combine function (and serialize and deserialize for internal states)');

-- Snapshot records are read only through tributary.snapshot(), which applies the caller's
-- privileges on the target and its row-level security: no one reads the table directly.
SELECT table_privs_are('tributary', 'snapshots', 'public', ARRAY[]::text[],
    'PUBLIC has no privilege on tributary.snapshots');
SELECT table_privs_are('tributary', 'snapshot_config', 'public', ARRAY['SELECT'],
    'PUBLIC may read tributary.snapshot_config (settings and seqs, no records)');

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
