--
-- dead_letters: what a dead letter holds, and replay_dead_letters after a fix.
--
SET bytea_output = 'hex';
SET DateStyle = 'ISO, YMD';

CREATE FUNCTION dl_list(s text)
RETURNS TABLE (payload text, sqlstate text, error text, attempts integer)
LANGUAGE sql AS $$
    SELECT payload_text(d.payload), d.sqlstate, d.error, d.attempts
    FROM tributary.dead_letters d WHERE d.stream = s ORDER BY d.id
$$;

CREATE TABLE dl_t (id integer PRIMARY KEY, v integer CONSTRAINT dl_t_v_positive CHECK (v > 0));
SELECT tributary.create_stream('dl_t', 'dl_t');
SELECT * FROM tributary.ingest('dl_t', ARRAY[
    '{"id": 1, "v": 1}',
    '{"id": 2, "v": -2}',
    '{"id": 3, "v": -3}',
    '{"id": 4, "v": 4}',
    'garbage',
    '{"id": 6, "v": "x"}',
    '{"id": 3, "v": -33}'
]);

-- Every column of a dead letter (a local stream's messages have no source position).
SELECT stream, source_stream, source_partition, source_position, payload, error, sqlstate, detail, attempts,
       failed_at IS NOT NULL AS has_failed_at
FROM tributary.dead_letters WHERE stream = 'dl_t' ORDER BY id;
\d tributary.dead_letters

-- The payload is kept byte for byte: invalid UTF-8, NUL bytes, multibyte characters.
SELECT * FROM tributary.ingest('dl_t', '\xfffe00'::bytea);
SELECT * FROM tributary.ingest('dl_t', convert_to(E'{"id": 7, "v": -7, "note": "é\\t中 \\\\ \\u00e9"}', 'UTF8'));
SELECT payload = '\xfffe00'::bytea AS bytes_exact
FROM tributary.dead_letters WHERE stream = 'dl_t' AND sqlstate = '22021';
SELECT payload = convert_to(E'{"id": 7, "v": -7, "note": "é\\t中 \\\\ \\u00e9"}', 'UTF8') AS bytes_exact
FROM tributary.dead_letters WHERE stream = 'dl_t' AND payload LIKE '%"id": 7%'::bytea;
-- a jsonb payload is kept as jsonb's text form of it
SELECT * FROM tributary.ingest('dl_t', '{"id": 8,   "v": -8}'::jsonb);
SELECT payload_text(payload) FROM tributary.dead_letters WHERE stream = 'dl_t' AND payload LIKE '%-8%'::bytea;

SELECT * FROM dl_list('dl_t');
SELECT stream, messages, rows, dead_letters FROM tributary.stream_stats WHERE stream = 'dl_t';

--
-- Replay before anything is fixed: every one fails again and stays, one attempt more.
--
SELECT * FROM tributary.replay_dead_letters('dl_t');
SELECT * FROM dl_list('dl_t');
SELECT count(*) FROM dl_t;

--
-- Fix the target (drop the CHECK constraint) and replay: the ones that now fit land and
-- are deleted; the rest stay with attempts incremented. Oldest first, so of two dead
-- letters with the same key the older lands and the newer fails on the unique key,
-- with its new error.
--
ALTER TABLE dl_t DROP CONSTRAINT dl_t_v_positive;
SELECT * FROM tributary.replay_dead_letters(name => 'dl_t');
SELECT * FROM dl_t ORDER BY id;
SELECT * FROM dl_list('dl_t');
SELECT detail FROM tributary.dead_letters WHERE stream = 'dl_t' AND sqlstate = '23505';
SELECT stream, messages, rows, dead_letters FROM tributary.stream_stats WHERE stream = 'dl_t';

-- Make room for the duplicate and replay again.
DELETE FROM dl_t WHERE id = 3;
SELECT * FROM tributary.replay_dead_letters('dl_t');
SELECT * FROM dl_t WHERE id = 3;
SELECT * FROM dl_list('dl_t');

-- Replay in a transaction that rolls back changes nothing.
DELETE FROM tributary.dead_letters WHERE stream = 'dl_t' AND sqlstate = '22021';
ALTER TABLE dl_t ALTER COLUMN v TYPE text;
BEGIN;
SELECT * FROM tributary.replay_dead_letters('dl_t');
SELECT count(*) AS dead_inside FROM tributary.dead_letters WHERE stream = 'dl_t';
ROLLBACK;
SELECT * FROM dl_list('dl_t');
SELECT count(*) FROM dl_t WHERE id = 6;
-- and committed
SELECT * FROM tributary.replay_dead_letters('dl_t');
SELECT id, v FROM dl_t WHERE id = 6;
SELECT * FROM dl_list('dl_t');

-- The dead letters a user deletes are gone for good; replay of none does nothing.
DELETE FROM tributary.dead_letters WHERE stream = 'dl_t';
SELECT * FROM tributary.replay_dead_letters('dl_t');

--
-- A dead letter whose error changes on replay is updated with the new error.
--
CREATE TABLE dl_c (id integer, v integer CONSTRAINT dl_c_small CHECK (v < 100));
SELECT tributary.create_stream('dl_c', 'dl_c');
SELECT * FROM tributary.ingest('dl_c', '{"id": 1, "v": 501}');
SELECT error, sqlstate, detail, attempts FROM tributary.dead_letters WHERE stream = 'dl_c';
ALTER TABLE dl_c DROP CONSTRAINT dl_c_small, ADD CONSTRAINT dl_c_even CHECK (v % 2 = 0);
SELECT * FROM tributary.replay_dead_letters('dl_c');
SELECT error, sqlstate, detail, attempts FROM tributary.dead_letters WHERE stream = 'dl_c';
ALTER TABLE dl_c ALTER COLUMN v TYPE numeric;
SELECT * FROM tributary.replay_dead_letters('dl_c');
SELECT error, sqlstate, detail, attempts FROM tributary.dead_letters WHERE stream = 'dl_c';
ALTER TABLE dl_c DROP CONSTRAINT dl_c_even;
SELECT * FROM tributary.replay_dead_letters('dl_c');
SELECT count(*) AS dead FROM tributary.dead_letters WHERE stream = 'dl_c';
SELECT * FROM dl_c;

--
-- A partitioned target: add the missing partition, then replay.
--
CREATE TABLE dl_p (id integer, at date) PARTITION BY RANGE (at);
CREATE TABLE dl_p_2024 PARTITION OF dl_p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT tributary.create_stream('dl_p', 'dl_p');
SELECT * FROM tributary.ingest('dl_p', ARRAY[
    '{"id": 1, "at": "2024-06-01"}',
    '{"id": 2, "at": "2025-03-01"}',
    '{"id": 3, "at": "2026-01-01"}',
    '{"id": 4, "at": "2025-12-31"}'
]);
SELECT payload, sqlstate, error FROM dl_list('dl_p');
SELECT * FROM tributary.replay_dead_letters('dl_p');
CREATE TABLE dl_p_2025 PARTITION OF dl_p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT * FROM tributary.replay_dead_letters('dl_p');
SELECT tableoid::regclass AS partition, id, at FROM dl_p ORDER BY id;
SELECT payload, sqlstate, attempts FROM dl_list('dl_p');
SELECT stream, messages, rows, dead_letters FROM tributary.stream_stats WHERE stream = 'dl_p';

--
-- Replay goes through the stream's current options: a format fixed after the fact.
--
CREATE TABLE dl_f (id integer, name text);
SELECT tributary.create_stream('dl_f', 'dl_f');
SELECT * FROM tributary.ingest('dl_f', ARRAY['1,one', '2,two']);
SELECT payload, sqlstate FROM dl_list('dl_f');
SELECT tributary.alter_stream('dl_f', '{"format": "csv", "columns": ["id", "name"]}');
SELECT * FROM tributary.replay_dead_letters('dl_f');
SELECT * FROM dl_f ORDER BY id;

-- Many dead letters (more than one replay batch of 1000).
CREATE TABLE dl_many (id integer CHECK (id < 0));
SELECT tributary.create_stream('dl_many', 'dl_many');
SELECT * FROM tributary.ingest('dl_many', (SELECT array_agg(format('{"id": %s}', g) ORDER BY g)
                                          FROM generate_series(1, 2500) g));
ALTER TABLE dl_many DROP CONSTRAINT dl_many_id_check, ADD CHECK (id % 1000 <> 0);
SELECT * FROM tributary.replay_dead_letters('dl_many');
SELECT count(*), sum(id) FROM dl_many;
SELECT payload, attempts FROM dl_list('dl_many');

-- Dropping a stream takes its dead letters with it.
SELECT count(*) FROM tributary.dead_letters WHERE stream = 'dl_many';
SELECT tributary.drop_stream('dl_many');
SELECT count(*) FROM tributary.dead_letters WHERE stream = 'dl_many';

-- Clean up.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'dl\_%' ORDER BY name;
SELECT count(*) AS dead_letters_left FROM tributary.dead_letters;
DROP TABLE dl_t, dl_c, dl_p, dl_f, dl_many;
DROP FUNCTION dl_list(text);
