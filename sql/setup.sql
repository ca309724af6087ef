--
-- setup: the extension and the roles the other tests use.
--
-- Every test file runs in the same database (contrib_regression), in REGRESS order.
-- Roles are cluster-wide: create them only when missing, so a re-run against an
-- existing cluster works; privileges.sql drops them at its end.
--
CREATE EXTENSION tributary;

-- The library must be preloaded (the launcher and shared memory need it) and the
-- launcher must watch this database.
SELECT 'tributary' = ANY (string_to_array(replace(setting, ' ', ''), ',')) AS preloaded
FROM pg_settings WHERE name = 'shared_preload_libraries';
SHOW tributary.database;

SELECT extname, extversion, extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'tributary';
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'tributary')
       AS is_default_version
FROM pg_extension WHERE extname = 'tributary';

-- CREATE EXTENSION created (or found) the admin role.
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'tributary_admin';

-- regress_trib_owner  owns the tables the privilege tests stream into
-- regress_trib_plain  no privileges at all
-- regress_trib_writer INSERT on a target, nothing else
-- regress_trib_admin  member of tributary_admin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['regress_trib_owner', 'regress_trib_plain',
                             'regress_trib_writer', 'regress_trib_admin']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    IF NOT pg_has_role('regress_trib_admin', 'tributary_admin', 'MEMBER') THEN
        GRANT tributary_admin TO regress_trib_admin;
    END IF;
END
$$;

SELECT r.rolname,
       pg_has_role(r.rolname, 'tributary_admin', 'USAGE') AS is_tributary_admin
FROM pg_roles r
WHERE r.rolname LIKE 'regress\_trib\_%'
ORDER BY r.rolname;

-- Shared by the tests that show payloads: a payload as text, or as hex when it is not
-- valid UTF-8.
CREATE FUNCTION payload_text(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN convert_from(b, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN 'hex:' || encode(b, 'hex');
END
$$;

-- No stream exists yet.
SELECT count(*) AS streams FROM tributary.streams;
SELECT count(*) AS dead_letters FROM tributary.dead_letters;
SELECT count(*) AS offsets FROM tributary.offsets;
