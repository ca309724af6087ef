--
-- privileges: who may create, manage and feed a stream, what plain users may read, and
-- that secrets and other people's dead letters stay hidden. The roles come from
-- setup.sql; this file drops them at its end.
--
-- regress_trib_owner  owns priv_t (and priv_rls)
-- regress_trib_plain  no privileges
-- regress_trib_writer INSERT on priv_t
-- regress_trib_admin  member of tributary_admin
--
CREATE TABLE priv_t (id integer PRIMARY KEY, v integer CHECK (v > 0));
ALTER TABLE priv_t OWNER TO regress_trib_owner;
GRANT INSERT ON priv_t TO regress_trib_writer;
CREATE TABLE priv_super_t (id integer, v integer CHECK (v > 0));   -- owned by the superuser

CREATE FUNCTION priv_counts() RETURNS TABLE (streams bigint, dead_letters bigint, rows_t bigint)
LANGUAGE sql SECURITY DEFINER AS $$
    SELECT (SELECT count(*) FROM tributary.stream_catalog),
           (SELECT count(*) FROM tributary.dead_letters),
           (SELECT count(*) FROM priv_t)
$$;
GRANT EXECUTE ON FUNCTION priv_counts() TO PUBLIC;

--
-- Creating a stream: any role that may INSERT into the target; the stream is its own.
--
SET ROLE regress_trib_plain;
SELECT tributary.create_stream('priv_plain', 'priv_t');
SELECT * FROM priv_counts();
RESET ROLE;

SET ROLE regress_trib_writer;
-- INSERT on the table is enough to declare a stream on it
SELECT tributary.create_stream('priv_writer', 'priv_t', enabled => false);
RESET ROLE;

SET ROLE regress_trib_owner;
SELECT tributary.create_stream('priv_owner', 'priv_t');
-- the owner cannot declare one on a table it may not insert into
SELECT tributary.create_stream('priv_owner2', 'priv_super_t');
RESET ROLE;

-- being an admin does not give INSERT: the stream could never store a row
SET ROLE regress_trib_admin;
SELECT tributary.create_stream('priv_admin_super', 'priv_super_t');
RESET ROLE;
GRANT INSERT ON priv_t TO regress_trib_admin;
SET ROLE regress_trib_admin;
SELECT tributary.create_stream('priv_admin', 'priv_t', enabled => false);
RESET ROLE;

SELECT tributary.create_stream('priv_super', 'priv_super_t');
-- a superuser's stream with credentials, into a table regress_trib_owner owns
SELECT tributary.create_stream('priv_kafka', 'priv_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"sasl.password": "s3cret", "client.id": "x", "ssl.key.password": "k",
                     "sasl.oauthbearer.config": "principal=p secret=s",
                     "ssl.keystore.password": "j", "ssl.key.location": "/k.pem", "sasl.username": "u"}}',
    enabled => false);

-- owner is the role that declared the stream (the bootstrap superuser's name is masked)
SELECT name, target,
       CASE WHEN owner::text LIKE 'regress\_trib\_%' THEN owner::text ELSE '(superuser)' END AS owner
FROM tributary.streams ORDER BY name;

--
-- Ingest needs INSERT on the target, whoever calls it.
--
SET ROLE regress_trib_plain;
SELECT * FROM tributary.ingest('priv_owner', '{"id": 1, "v": 1}');
SELECT * FROM tributary.ingest('priv_owner', ARRAY['{"id": 1, "v": -1}', 'bad']);
SELECT * FROM priv_counts();
RESET ROLE;

-- a role with INSERT (and nothing else) can ingest: rows land, dead letters are written
SET ROLE regress_trib_writer;
SELECT * FROM tributary.ingest('priv_owner', ARRAY['{"id": 1, "v": 1}', '{"id": 2, "v": -2}', 'bad']);
RESET ROLE;
SELECT * FROM priv_t ORDER BY id;
SELECT * FROM priv_counts();

-- ... but cannot manage a stream it does not own
SET ROLE regress_trib_writer;
SELECT tributary.alter_stream('priv_owner', '{"batch_size": 5}');
SELECT tributary.stop('priv_owner');
SELECT tributary.start('priv_owner');
SELECT tributary.drop_stream('priv_owner');
SELECT tributary.drop_stream('priv_owner', if_exists => true);
SELECT * FROM tributary.replay_dead_letters('priv_owner');
-- its own stream it manages
SELECT tributary.alter_stream('priv_writer', '{"batch_size": 7}');
SELECT tributary.start('priv_writer');
SELECT tributary.stop('priv_writer');
RESET ROLE;
SELECT name, enabled, config_version FROM tributary.streams WHERE name IN ('priv_owner', 'priv_writer') ORDER BY name;

-- A plain role cannot manage either.
SET ROLE regress_trib_plain;
SELECT tributary.stop('priv_super');
SELECT tributary.alter_stream('priv_owner', '{}');
RESET ROLE;

-- The owner of the target table stops and drops streams into it, whoever owns them, but
-- alters, starts or replays only its own: it cannot point a superuser's stream, and the
-- credentials stored with it, at a broker of its choosing.
SET ROLE regress_trib_owner;
SELECT tributary.alter_stream('priv_kafka', '{"brokers": "127.0.0.1:55777"}');
SELECT tributary.start('priv_kafka');
SELECT tributary.stop('priv_kafka');
SELECT tributary.alter_stream('priv_writer', '{"batch_size": 8}');
SELECT tributary.alter_stream('priv_owner', '{"batch_size": 5}');
SELECT tributary.stop('priv_owner');
SELECT tributary.start('priv_owner');
SELECT * FROM tributary.ingest('priv_owner', '{"id": 3, "v": 3}');
RESET ROLE;
SELECT name, enabled, config_version, options ->> 'brokers' AS brokers FROM tributary.streams
WHERE name IN ('priv_owner', 'priv_kafka', 'priv_writer') ORDER BY name;

-- Members of the owner's role manage too.
BEGIN;
GRANT regress_trib_owner TO regress_trib_plain;
SET ROLE regress_trib_plain;
SELECT tributary.alter_stream('priv_owner', '{"batch_ms": 5}');
SELECT options FROM tributary.streams WHERE name = 'priv_owner';
ROLLBACK;

-- An admin manages any stream.
SET ROLE regress_trib_admin;
SELECT tributary.start('priv_admin');
SELECT tributary.alter_stream('priv_super', '{"batch_size": 9}');
SELECT tributary.stop('priv_super');
SELECT tributary.start('priv_super');
RESET ROLE;
SELECT name, enabled, config_version FROM tributary.streams WHERE name IN ('priv_admin', 'priv_super') ORDER BY name;

--
-- tributary's own tables: plain users read the views, never the catalog, and cannot
-- write dead letters or offsets.
--
SET ROLE regress_trib_plain;
SELECT count(*) FROM tributary.stream_catalog;
INSERT INTO tributary.dead_letters (stream, payload, error, sqlstate) VALUES ('priv_owner', 'x', 'e', 'XX000');
UPDATE tributary.dead_letters SET attempts = 0;
INSERT INTO tributary.offsets (stream, source_stream, source_partition, position) VALUES ('priv_kafka', 't', '0', '1');
DELETE FROM tributary.offsets;
INSERT INTO tributary.stream_catalog (name, target, source, owner) VALUES ('x', 'priv_t', 'local', 'regress_trib_plain');
SELECT count(*) AS streams_visible FROM tributary.streams;
SELECT count(*) AS stats_visible FROM tributary.stream_stats;
SELECT count(*) AS offsets_visible FROM tributary.offsets;
SELECT count(*) AS kafka_offsets_visible FROM tributary.kafka_offsets;
RESET ROLE;
SET ROLE regress_trib_admin;
SELECT count(*) AS catalog_rows FROM tributary.stream_catalog;
INSERT INTO tributary.dead_letters (stream, payload, error, sqlstate) VALUES ('priv_owner', 'x', 'e', 'XX000');
RESET ROLE;

--
-- Options are shown only to those who manage the stream, with secrets masked for all
-- but admins and superusers.
--
SET ROLE regress_trib_plain;
SELECT options IS NULL AS plain_sees_no_options FROM tributary.streams WHERE name = 'priv_kafka';
RESET ROLE;
SET ROLE regress_trib_owner;
SELECT options IS NULL AS target_owner_sees_no_options FROM tributary.streams WHERE name = 'priv_kafka';
RESET ROLE;
-- the stream's owner sees its options, secrets masked
BEGIN;
SELECT tributary.alter_stream_owner('priv_kafka', 'regress_trib_writer');
SET ROLE regress_trib_writer;
SELECT jsonb_pretty(options -> 'librdkafka') AS stream_owner_sees FROM tributary.streams WHERE name = 'priv_kafka';
SELECT options ->> 'brokers' AS brokers, options ->> 'topic' AS topic FROM tributary.streams WHERE name = 'priv_kafka';
RESET ROLE;
ROLLBACK;
SET ROLE regress_trib_admin;
SELECT jsonb_pretty(options -> 'librdkafka') AS admin_sees FROM tributary.streams WHERE name = 'priv_kafka';
RESET ROLE;
SELECT options -> 'librdkafka' ->> 'sasl.password' AS superuser_sees FROM tributary.streams WHERE name = 'priv_kafka';
-- masking changes only what is shown
SELECT options -> 'librdkafka' ->> 'sasl.password' AS stored FROM tributary.stream_catalog WHERE name = 'priv_kafka';
-- the password in a Redis URL is masked the same way
SELECT tributary._redact_options('{"url": "redis://app:hunter2@cache:6379/0?password=again&db=1"}') ->> 'url' AS masked_url;

--
-- Dead letters are visible (and deletable) only for the streams one may manage.
--
SELECT * FROM tributary.ingest('priv_super', ARRAY['{"id": 10, "v": -10}', 'bad super']);
SELECT stream, convert_from(payload, 'UTF8') AS payload FROM tributary.dead_letters ORDER BY id;

SET ROLE regress_trib_plain;
SELECT stream, convert_from(payload, 'UTF8') AS payload FROM tributary.dead_letters ORDER BY id;
RESET ROLE;
SET ROLE regress_trib_writer;
SELECT stream, convert_from(payload, 'UTF8') AS payload FROM tributary.dead_letters ORDER BY id;
RESET ROLE;
SET ROLE regress_trib_owner;
SELECT stream, convert_from(payload, 'UTF8') AS payload FROM tributary.dead_letters ORDER BY id;
RESET ROLE;
SET ROLE regress_trib_admin;
SELECT stream, convert_from(payload, 'UTF8') AS payload FROM tributary.dead_letters ORDER BY id;
RESET ROLE;

-- A plain user's DELETE reaches no row; the owner's reaches only its stream's.
BEGIN;
SET ROLE regress_trib_plain;
WITH d AS (DELETE FROM tributary.dead_letters RETURNING stream) SELECT count(*) AS deleted_by_plain FROM d;
RESET ROLE;
SELECT count(*) AS dead_letters_left FROM tributary.dead_letters;
ROLLBACK;
BEGIN;
SET ROLE regress_trib_owner;
WITH d AS (DELETE FROM tributary.dead_letters RETURNING stream) SELECT stream, count(*) AS deleted_by_owner FROM d GROUP BY stream;
RESET ROLE;
SELECT stream, count(*) AS left FROM tributary.dead_letters GROUP BY stream ORDER BY stream;
ROLLBACK;

-- The owner replays its stream's dead letters (it has INSERT on its own table).
ALTER TABLE priv_t DROP CONSTRAINT priv_t_v_check;
SET ROLE regress_trib_owner;
SELECT * FROM tributary.replay_dead_letters('priv_owner');
RESET ROLE;
SELECT * FROM priv_t ORDER BY id;

--
-- last_error can quote a row (a trigger's message): only those who manage the stream
-- read it, in tributary.streams and in tributary.stream_stats.
--
UPDATE tributary.stream_catalog SET last_error = 'card 4111 1111 1111 1111 refused', last_error_at = now()
WHERE name = 'priv_kafka';
SET ROLE regress_trib_plain;
SELECT name, last_error, last_error_at FROM tributary.streams WHERE name = 'priv_kafka';
SELECT stream, last_error, last_error_at FROM tributary.stream_stats WHERE stream = 'priv_kafka';
RESET ROLE;
SET ROLE regress_trib_owner;
SELECT name, last_error FROM tributary.streams WHERE name = 'priv_kafka';
RESET ROLE;
SET ROLE regress_trib_admin;
SELECT name, last_error FROM tributary.streams WHERE name = 'priv_kafka';
SELECT stream, last_error FROM tributary.stream_stats WHERE stream = 'priv_kafka';
RESET ROLE;
UPDATE tributary.stream_catalog SET last_error = NULL, last_error_at = NULL WHERE name = 'priv_kafka';

--
-- A stream whose target was dropped: its owner still stops and drops it, and reads its
-- dead letters.
--
CREATE TABLE priv_gone (id integer CHECK (id > 0));
ALTER TABLE priv_gone OWNER TO regress_trib_owner;
SET ROLE regress_trib_owner;
SELECT tributary.create_stream('priv_gone', 'priv_gone');
SELECT * FROM tributary.ingest('priv_gone', ARRAY['{"id": -1}', '{"id": 1}']);
DROP TABLE priv_gone;
SELECT stream, convert_from(payload, 'UTF8') AS payload, sqlstate FROM tributary.dead_letters
WHERE stream = 'priv_gone';
SELECT tributary.stop('priv_gone');
SELECT * FROM tributary.ingest('priv_gone', '{"id": 2}');
SELECT tributary.drop_stream('priv_gone');
RESET ROLE;
SELECT count(*) AS priv_gone_left FROM tributary.stream_catalog WHERE name = 'priv_gone';

--
-- Owner roles: DROP ROLE is refused while the role owns streams; REASSIGN OWNED gives
-- them to another role, DROP OWNED drops them; alter_stream_owner is for admins.
--
CREATE ROLE regress_trib_leaver;
GRANT INSERT ON priv_t TO regress_trib_leaver;
SET ROLE regress_trib_leaver;
SELECT tributary.create_stream('priv_leaver_a', 'priv_t', enabled => false);
SELECT tributary.create_stream('priv_leaver_b', 'priv_t', enabled => false);
RESET ROLE;
DROP ROLE regress_trib_leaver;
DROP ROLE IF EXISTS regress_trib_nobody;
SELECT name, owner FROM tributary.streams WHERE name LIKE 'priv\_leaver%' ORDER BY name;
-- alter_stream_owner: admins only, to a role that may insert into the target
SET ROLE regress_trib_leaver;
SELECT tributary.alter_stream_owner('priv_leaver_a', 'regress_trib_leaver');
RESET ROLE;
SET ROLE regress_trib_admin;
SELECT tributary.alter_stream_owner('priv_leaver_a', 'regress_trib_plain');
SELECT tributary.alter_stream_owner('priv_leaver_a', 'regress_trib_writer');
RESET ROLE;
SELECT name, owner, config_version FROM tributary.streams WHERE name LIKE 'priv\_leaver%' ORDER BY name;
-- REASSIGN OWNED moves the rest along with the role's other objects
REASSIGN OWNED BY regress_trib_leaver TO regress_trib_owner;
SELECT name, owner, config_version FROM tributary.streams WHERE name LIKE 'priv\_leaver%' ORDER BY name;
-- DROP OWNED drops the streams a role owns, with their dead letters
SELECT tributary.alter_stream_owner('priv_leaver_b', 'regress_trib_leaver');
SET ROLE regress_trib_leaver;
SELECT * FROM tributary.ingest('priv_leaver_b', 'not json');
SELECT tributary.start('priv_leaver_b');
SELECT * FROM tributary.ingest('priv_leaver_b', 'not json');
RESET ROLE;
SELECT count(*) AS leaver_dead_letters FROM tributary.dead_letters WHERE stream = 'priv_leaver_b';
-- (quality rows, as a stream's windows would leave them: those tables have no foreign keys)
INSERT INTO tributary.quality_partials (stream, pane_start, arrived, state)
VALUES ('priv_leaver_b', '2026-01-01', now(), '\x00');
INSERT INTO tributary.quality_windows (stream, window_start, window_end, rows, duplicates, outliers,
                                       dead_letters, late_rows, closed_at, state)
VALUES ('priv_leaver_b', '2026-01-01', '2026-01-01 00:01', 0, 0, 0, 0, 0, now(), '\x00');
INSERT INTO tributary.quality_columns (stream, window_start, window_end, column_name, rows, non_null,
                                       distinct_count)
VALUES ('priv_leaver_b', '2026-01-01', '2026-01-01 00:01', 'v', 0, 0, 0);
DROP OWNED BY regress_trib_leaver;
SELECT count(*) AS leaver_streams FROM tributary.stream_catalog WHERE name = 'priv_leaver_b';
SELECT (SELECT count(*) FROM tributary.quality_partials WHERE stream = 'priv_leaver_b') AS partials,
       (SELECT count(*) FROM tributary.quality_windows WHERE stream = 'priv_leaver_b') AS windows,
       (SELECT count(*) FROM tributary.quality_columns WHERE stream = 'priv_leaver_b') AS columns;
SELECT count(*) AS leaver_dead_letters FROM tributary.dead_letters WHERE stream = 'priv_leaver_b';
DROP ROLE regress_trib_leaver;
SELECT name, owner FROM tributary.streams WHERE name LIKE 'priv\_leaver%' ORDER BY name;

--
-- Row-level security on a target: refused for a role it applies to.
--
CREATE TABLE priv_rls (id integer);
ALTER TABLE priv_rls OWNER TO regress_trib_owner;
ALTER TABLE priv_rls ENABLE ROW LEVEL SECURITY;
ALTER TABLE priv_rls FORCE ROW LEVEL SECURITY;
SET ROLE regress_trib_owner;
SELECT tributary.create_stream('priv_rls', 'priv_rls');
RESET ROLE;
-- a superuser bypasses RLS, so it may declare the stream ...
SELECT tributary.create_stream('priv_rls', 'priv_rls');
-- ... but the owner, to whom RLS applies, cannot ingest through it
SET ROLE regress_trib_owner;
SELECT * FROM tributary.ingest('priv_rls', '{"id": 1}');
RESET ROLE;
SELECT count(*) FROM priv_rls;

-- DROP OWNED BY the extension's owner drops the extension, and its streams with it (in a
-- database of its own, which keeps this one's extension).
CREATE ROLE regress_trib_extowner SUPERUSER;
CREATE DATABASE regress_trib_owned;
\set regress_db :DBNAME
\c regress_trib_owned
SET ROLE regress_trib_extowner;
CREATE EXTENSION tributary;
CREATE TABLE owned_t (id int);
SELECT tributary.create_stream('owned', 'owned_t', 'local');
RESET ROLE;
DROP OWNED BY regress_trib_extowner;
SELECT count(*) AS extensions_left FROM pg_extension WHERE extname = 'tributary';
\c :regress_db
DROP DATABASE regress_trib_owned;
DROP ROLE regress_trib_extowner;

-- Clean up: streams, tables, then the roles of setup.sql.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'priv\_%' ORDER BY name;
DROP TABLE priv_t, priv_super_t, priv_rls;
DROP FUNCTION priv_counts();
DROP OWNED BY regress_trib_owner, regress_trib_plain, regress_trib_writer, regress_trib_admin;
DROP ROLE regress_trib_owner, regress_trib_plain, regress_trib_writer, regress_trib_admin;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'regress\_trib\_%';
