--
-- upgrade: every version of tributary that can be installed must update to the default
-- version and end up identical to a fresh install of it: the same member objects, the
-- same definitions of functions, views, tables, constraints, indexes, policies, types,
-- privileges and comments, and the same config-dump registrations.
--
-- Written against the catalogs only, so it needs no change when a version is added:
-- with only the default version available the loop runs zero times and the other
-- checks still apply. It runs last: it drops and re-creates the extension and leaves
-- it installed at the default version.
--

-- Everything the extension defines, one line per fact, independent of OIDs.
CREATE FUNCTION upgrade_snapshot() RETURNS SETOF text LANGUAGE sql AS $fn$
    WITH ext AS (
        SELECT e.oid, e.extnamespace, e.extrelocatable, e.extconfig, e.extcondition
        FROM pg_extension e WHERE e.extname = 'tributary'
    ), members AS (
        SELECT d.classid, d.objid, d.objsubid
        FROM pg_depend d, ext
        WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
    ), rels AS (
        SELECT c.* FROM pg_class c, ext WHERE c.relnamespace = ext.extnamespace
    )
    SELECT 'extension: schema ' || n.nspname || ' relocatable ' || ext.extrelocatable
           || ' schema acl ' || coalesce(n.nspacl::text, '-') || ' schema owner is extension owner '
           || (n.nspowner = (SELECT extowner FROM pg_extension WHERE extname = 'tributary'))
    FROM ext JOIN pg_namespace n ON n.oid = ext.extnamespace
    UNION ALL
    SELECT 'member: ' || pg_describe_object(m.classid, m.objid, m.objsubid) FROM members m
    UNION ALL
    -- functions and procedures (aggregates have no pg_get_functiondef; see below)
    SELECT 'function: ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, '-')
    FROM pg_proc p, ext WHERE p.pronamespace = ext.extnamespace AND p.prokind <> 'a'
    UNION ALL
    SELECT 'aggregate: ' || a.aggfnoid::regprocedure
           || format(' kind %s trans %s final %s combine %s serial %s deserial %s mtrans %s minv %s mfinal %s stype %s sspace %s mstype %s init %s minit %s finalextra %s finalmodify %s sortop %s parallel %s strict %s acl %s',
                     a.aggkind, a.aggtransfn::regprocedure, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                     a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn,
                     format_type(a.aggtranstype, NULL), a.aggtransspace, format_type(a.aggmtranstype, NULL),
                     a.agginitval, a.aggminitval, a.aggfinalextra, a.aggfinalmodify, a.aggsortop,
                     p.proparallel, p.proisstrict, coalesce(p.proacl::text, '-'))
    FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid, ext
    WHERE p.pronamespace = ext.extnamespace
    UNION ALL
    SELECT 'relation: ' || c.oid::regclass
           || format(' kind %s persistence %s rls %s force_rls %s options %s acl %s',
                     c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
                     coalesce(c.reloptions::text, '-'), coalesce(c.relacl::text, '-'))
    FROM rels c WHERE c.relkind NOT IN ('i', 'I', 'c')
    UNION ALL
    SELECT 'column: ' || c.oid::regclass || '.' || a.attname
           || format(' %s notnull %s default %s identity %s generated %s collation %s acl %s',
                     format_type(a.atttypid, a.atttypmod), a.attnotnull,
                     coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), a.attidentity, a.attgenerated,
                     CASE WHEN a.attcollation = 0 THEN '-' ELSE a.attcollation::regcollation::text END,
                     coalesce(a.attacl::text, '-'))
    FROM rels c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
    UNION ALL
    SELECT 'view: ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
    FROM rels c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'index: ' || pg_get_indexdef(c.oid) FROM rels c WHERE c.relkind IN ('i', 'I')
    UNION ALL
    SELECT 'sequence: ' || s.seqrelid::regclass
           || format(' %s start %s inc %s min %s max %s cache %s cycle %s',
                     format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                     s.seqcache, s.seqcycle)
    FROM pg_sequence s JOIN rels c ON c.oid = s.seqrelid
    UNION ALL
    SELECT 'constraint: ' || coalesce(co.conrelid::regclass::text, co.contypid::regtype::text)
           || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM pg_constraint co, ext WHERE co.connamespace = ext.extnamespace
    UNION ALL
    SELECT 'trigger: ' || pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy: ' || pol.polrelid::regclass || ' ' || pol.polname
           || format(' cmd %s permissive %s roles %s using %s check %s', pol.polcmd, pol.polpermissive,
                     (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END ORDER BY 1)
                      FROM unnest(pol.polroles) r),
                     coalesce(pg_get_expr(pol.polqual, pol.polrelid), '-'),
                     coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '-'))
    FROM pg_policy pol JOIN rels c ON c.oid = pol.polrelid
    UNION ALL
    SELECT 'type: ' || t.oid::regtype
           || format(' type %s category %s base %s notnull %s default %s acl %s', t.typtype, t.typcategory,
                     CASE WHEN t.typbasetype = 0 THEN '-' ELSE format_type(t.typbasetype, t.typtypmod) END,
                     t.typnotnull, coalesce(t.typdefault, '-'), coalesce(t.typacl::text, '-'))
    FROM pg_type t, ext WHERE t.typnamespace = ext.extnamespace
    UNION ALL
    SELECT 'enum: ' || e.enumtypid::regtype || ' ' || e.enumlabel || ' ' || e.enumsortorder
    FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid, ext WHERE t.typnamespace = ext.extnamespace
    UNION ALL
    SELECT 'comment: ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
    FROM pg_description d JOIN members m ON m.classid = d.classoid AND m.objid = d.objoid
    UNION ALL
    SELECT 'comment: ' || pg_describe_object('pg_class'::regclass, c.oid, a.attnum) || ': ' || d.description
    FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
    JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = a.attnum
    UNION ALL
    SELECT 'config dump: ' || cfg.rel::regclass || ' where ' || coalesce(nullif(cfg.cond, ''), '(all rows)')
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS cfg (rel, cond)
    UNION ALL
    SELECT 'role: ' || r.rolname || format(' login %s super %s inherit %s', r.rolcanlogin, r.rolsuper, r.rolinherit)
    FROM pg_roles r WHERE r.rolname = 'tributary_admin'
$fn$;

CREATE TABLE upgrade_snap (install text, item text);
CREATE VIEW upgrade_diffs AS
SELECT i.install, 'only in a fresh install' AS side, f.item
FROM (SELECT DISTINCT install FROM upgrade_snap WHERE install <> 'fresh') i
CROSS JOIN upgrade_snap f
WHERE f.install = 'fresh'
  AND NOT EXISTS (SELECT FROM upgrade_snap o WHERE o.install = i.install AND o.item = f.item)
UNION ALL
SELECT o.install, 'only in this install', o.item
FROM upgrade_snap o
WHERE o.install <> 'fresh'
  AND NOT EXISTS (SELECT FROM upgrade_snap f WHERE f.install = 'fresh' AND f.item = o.item);

-- The earlier tests cleaned up after themselves; drop what might be left through the API.
SELECT count(*) AS streams_left_by_earlier_tests FROM tributary.streams;
SELECT tributary.drop_stream(name) FROM tributary.streams ORDER BY name;

-- The install every other test ran against must equal a fresh one, too.
INSERT INTO upgrade_snap SELECT 'as tested', s FROM upgrade_snapshot() s;

-- Every other available version: install it, update to the default, take a snapshot.
-- Then a fresh install of the default version, which this file leaves in place.
DO $$
DECLARE
    default_v text;
    v text;
    now_v text;
BEGIN
    SELECT default_version INTO STRICT default_v
    FROM pg_available_extensions WHERE name = 'tributary';
    FOR v IN SELECT version FROM pg_available_extension_versions
             WHERE name = 'tributary' AND version <> default_v ORDER BY version
    LOOP
        DROP EXTENSION tributary;
        EXECUTE format('CREATE EXTENSION tributary VERSION %L', v);
        ALTER EXTENSION tributary UPDATE;
        SELECT extversion INTO STRICT now_v FROM pg_extension WHERE extname = 'tributary';
        IF now_v <> default_v THEN
            RAISE EXCEPTION 'updating tributary from % ended at %, not at the default %', v, now_v, default_v;
        END IF;
        INSERT INTO upgrade_snap SELECT 'updated from ' || v, s FROM upgrade_snapshot() s;
    END LOOP;
    DROP EXTENSION tributary;
    CREATE EXTENSION tributary;
    INSERT INTO upgrade_snap SELECT 'fresh', s FROM upgrade_snapshot() s;
END
$$;

-- The snapshots are not empty, and they differ in nothing.
SELECT count(*) > 100 AS fresh_snapshot_is_detailed FROM upgrade_snap WHERE install = 'fresh';
SELECT count(*) AS differences FROM upgrade_diffs;
SELECT * FROM upgrade_diffs ORDER BY install, side, item;

-- The comparison does catch a difference (checked on a change that is rolled back).
BEGIN;
ALTER FUNCTION tributary._is_admin() VOLATILE;
COMMENT ON TABLE tributary.offsets IS 'changed';
REVOKE SELECT ON tributary.offsets FROM PUBLIC;
INSERT INTO upgrade_snap SELECT 'mutated', s FROM upgrade_snapshot() s;
SELECT side, count(*) FROM upgrade_diffs WHERE install = 'mutated' GROUP BY side ORDER BY side;
ROLLBACK;

-- Every available version has an update path to the default version.
SELECT v.version AS version_without_update_path
FROM pg_available_extension_versions v
JOIN pg_available_extensions e ON e.name = v.name
WHERE v.name = 'tributary' AND v.version <> e.default_version
  AND NOT EXISTS (SELECT FROM pg_extension_update_paths('tributary') p
                  WHERE p.source = v.version AND p.target = e.default_version AND p.path IS NOT NULL);
SELECT count(*) >= 1 AS default_version_is_available
FROM pg_available_extension_versions v JOIN pg_available_extensions e ON e.name = v.name
WHERE v.name = 'tributary' AND v.version = e.default_version;

-- The extension is installed at the default version, ready to use.
SELECT e.extversion = a.default_version AS at_default_version
FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
WHERE e.extname = 'tributary';
SELECT count(*) AS streams FROM tributary.streams;

--
-- Live counters belong to a stream, not to a reused id: a stream declared after DROP
-- EXTENSION and CREATE EXTENSION (whose catalog ids start again at 1) starts at zero,
-- even though a stream of the dropped install was never passed to drop_stream.
--
CREATE TABLE upgrade_probe (id integer);
SELECT tributary.create_stream('upgrade_probe', 'upgrade_probe', key => 'id');
SELECT tributary.set_snapshot('upgrade_probe');
SELECT * FROM tributary.ingest('upgrade_probe', ARRAY['{"id": 1}', '{"id": 2}']);
SELECT stream, messages, rows FROM tributary.stream_stats;
DROP EXTENSION tributary;
CREATE EXTENSION tributary;
SELECT tributary.create_stream('upgrade_probe_2', 'upgrade_probe');
SELECT stream, messages, rows, dead_letters, bytes, batches, last_commit IS NULL AS never_committed
FROM tributary.stream_stats;
SELECT tributary.drop_stream('upgrade_probe_2');
-- This session kept its plans of tributary's per-batch statements (stream, snapshot
-- settings) made on the dropped install's tables: they are planned again on the new ones.
SELECT tributary.create_stream('upgrade_probe_3', 'upgrade_probe', key => 'id');
SELECT tributary.set_snapshot('upgrade_probe_3');
SELECT * FROM tributary.ingest('upgrade_probe_3', ARRAY['{"id": 3}', '{"id": 4}']);
SELECT key, seq, record FROM tributary.snapshot('upgrade_probe_3') ORDER BY key;
SELECT tributary.drop_stream('upgrade_probe_3');

--
-- Data carried over the update from 0.2.0: offsets and dead letters stay, their positions
-- as text (an offset past int4 intact, updated_at unchanged; NULL stays NULL), and a
-- carried dead letter replays with its partition and offset in the metadata columns; a
-- redis stream, which 0.2.0 accepted and ran as an idle worker that showed "running",
-- fails with the reason (one transaction, so the launcher never sees it started on 0.2.0),
-- and cannot start with 0.2.0's option names (stream_key is now stream).
--
DROP EXTENSION tributary;
CREATE EXTENSION tributary VERSION '0.2.0';
CREATE TABLE upgrade_meta (id integer CHECK (id > 0), t text, p integer, o bigint);
BEGIN;
INSERT INTO tributary.stream_catalog (name, target, source, options, owner, enabled) VALUES
    ('up_redis', 'upgrade_probe', 'redis', '{"url": "redis://x", "stream_key": "k"}', current_user::regrole, true),
    ('up_kafka', 'upgrade_meta', 'kafka',
     '{"brokers": "b:9092", "topic": "t", "metadata": {"topic": "t", "partition": "p", "offset": "o"}}',
     current_user::regrole, false),
    ('up_local', 'upgrade_probe', 'local', '{}', current_user::regrole, true);
INSERT INTO tributary.offsets (stream, topic, partition, next_offset, updated_at) VALUES
    ('up_kafka', 't', 0, 42, '2026-01-02 03:04:05+00'),
    ('up_kafka', 't', 3, 9007199254740993, '2026-01-02 03:04:06+00');
INSERT INTO tributary.dead_letters (stream, topic, partition, source_offset, payload, error, sqlstate) VALUES
    ('up_kafka', 't', 0, 41, '\xff00', 'message is not valid JSON', '22P02'),
    ('up_kafka', 't', 3, 9007199254740992, '{"id": 7}', 'new row violates check constraint', '23514'),
    ('up_local', NULL, NULL, NULL, '{"id": 8}', 'new row violates check constraint', '23514');
ALTER EXTENSION tributary UPDATE;
COMMIT;
SELECT name, source, state, last_error FROM tributary.streams ORDER BY name;
SELECT stream, source_stream, source_partition, position, updated_at FROM tributary.offsets
ORDER BY stream, source_partition;
SELECT stream, topic, partition, next_offset, updated_at FROM tributary.kafka_offsets ORDER BY partition;
SELECT stream, source_stream, source_partition, source_position, payload, error, sqlstate
FROM tributary.dead_letters ORDER BY id;
SELECT * FROM tributary.replay_dead_letters('up_kafka');
SELECT id, t, p, o FROM upgrade_meta;
SELECT tributary.start('up_redis');
SELECT tributary.drop_stream('up_redis');
SELECT tributary.drop_stream('up_kafka');
SELECT tributary.drop_stream('up_local');

-- Clean up; the extension stays installed.
DROP TABLE upgrade_probe;
DROP TABLE upgrade_meta;
DROP VIEW upgrade_diffs;
DROP TABLE upgrade_snap;
DROP FUNCTION upgrade_snapshot();
SELECT extname FROM pg_extension WHERE extname = 'tributary';
