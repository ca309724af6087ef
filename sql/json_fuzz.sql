--
-- json_fuzz: the fast scanner for flat JSON objects against PostgreSQL's JSON parser, on
-- thousands of mutated messages.
--
-- A json stream splits a flat object of plain values with its own scanner and sends every
-- other message through pg_parse_json (src/formats/json.c). A stream with an "overflow"
-- column never takes the scanner. So the same messages go into two streams, fz_fast and
-- fz_slow, and both must store the same values and dead-letter the same messages. On top,
-- PostgreSQL's json input is the judge of validity: what it rejects must be a dead letter,
-- and a valid object of scalars must land (the columns are text and jsonb, which take any
-- scalar). The mutations are pseudo-random but seeded, so every run checks the same
-- messages; only counts that do not depend on the random sequence are printed.
--
SET client_min_messages = warning;

CREATE TABLE fz_fast (a text, b text, c jsonb);
CREATE TABLE fz_slow (a text, b text, c jsonb, rest jsonb);
SELECT tributary.create_stream('fz_fast', 'fz_fast');
SELECT tributary.create_stream('fz_slow', 'fz_slow', 'local', '{"format": "json", "overflow": "rest"}');

-- Apply n random edits to m: delete, insert, replace a character, cut the end, or repeat
-- a slice. Inserted characters are the ones JSON's grammar turns on.
CREATE FUNCTION fz_mutate(m text, n int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    alphabet constant text := '{}[]":,0123456789.-+eEtrufalsn \/' || E'\t\n\r' || 'éü';
    pos int;
    ch text;
BEGIN
    FOR i IN 1 .. n LOOP
        pos := 1 + floor(random() * greatest(length(m), 1))::int;
        ch := substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1);
        CASE floor(random() * 5)::int
            WHEN 0 THEN m := overlay(m PLACING '' FROM pos FOR 1);
            WHEN 1 THEN m := overlay(m PLACING ch FROM pos FOR 0);
            WHEN 2 THEN m := overlay(m PLACING ch FROM pos FOR 1);
            WHEN 3 THEN m := left(m, pos - 1);
            ELSE m := overlay(m PLACING substr(m, pos, 1 + floor(random() * 6)::int) FROM pos FOR 0);
        END CASE;
    END LOOP;
    RETURN m;
END $$;

CREATE TABLE fz_seeds (k int, m text);
INSERT INTO fz_seeds VALUES
    (1, '{"a": "x", "b": "y", "c": 1}'),
    (2, '{"a":"hello world","b":"","c":{"k":[1,2,{"z":null}]}}'),
    (3, '{"a": -12.5e+3, "b": true, "c": false, "x": null}'),
    (4, '{"a": "esc \"q\" \\n", "b": "\u00e9", "c": [1, "two", 3.0]}'),
    (5, E'  {"c": "s",\n "a" : 0 , "b":1E-2}\t'),
    (6, '{"x": {"a": 1}, "a": "dup", "a": "last"}'),
    (7, '{}'),
    (8, '{"b": "ünï", "c": "1", "a": "-0", "zz": 0.5}'),
    (9, '{"a":null,"b":null,"c":null}'),
    (10, '{"c": 123456789012345678901234567890, "a": "1e400", "b": false}');

SELECT setseed(0.25);
CREATE TABLE fz_msgs (k serial, m text);
DO $$
BEGIN
    -- one edit in two messages of three, two or three in the rest
    FOR i IN 0 .. 5999 LOOP
        INSERT INTO fz_msgs (m)
        SELECT fz_mutate(m, CASE WHEN random() < 0.67 THEN 1 ELSE 2 + floor(random() * 2)::int END)
        FROM fz_seeds WHERE k = 1 + i % 10;
    END LOOP;
    -- the seeds themselves, unmutated
    INSERT INTO fz_msgs (m) SELECT m FROM fz_seeds ORDER BY k;
END $$;

-- PostgreSQL's verdict per message: invalid JSON, not an object, an object with a number
-- jsonb cannot hold (column c is jsonb: such a message is a dead letter for its value, not
-- its syntax), an object with nested values, or a flat object of scalars.
CREATE FUNCTION fz_verdict(m text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF json_typeof(m::json) <> 'object' THEN
        RETURN 'not an object';
    END IF;
    BEGIN
        PERFORM m::jsonb;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RETURN 'number out of range';
    END;
    IF EXISTS (SELECT FROM json_each(m::json) e WHERE json_typeof(e.value) IN ('object', 'array')) THEN
        RETURN 'nested object';
    END IF;
    RETURN 'flat object';
EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
    RETURN 'invalid';
END $$;
ALTER TABLE fz_msgs ADD COLUMN verdict text;
UPDATE fz_msgs SET verdict = fz_verdict(m);

CREATE TABLE fz_results AS
SELECT 'fz_fast' AS stream, * FROM tributary.ingest('fz_fast', (SELECT array_agg(m ORDER BY k) FROM fz_msgs))
UNION ALL
SELECT 'fz_slow', * FROM tributary.ingest('fz_slow', (SELECT array_agg(m ORDER BY k) FROM fz_msgs));

CREATE VIEW fz_dead AS
SELECT d.stream, payload_text(d.payload) AS m FROM tributary.dead_letters d
WHERE d.stream IN ('fz_fast', 'fz_slow');

-- Every message is stored or dead-lettered, in both streams, as ingest() reported.
SELECT r.stream,
       r.accepted + r.dead_lettered = (SELECT count(*) FROM fz_msgs) AS all_accounted,
       r.accepted = CASE r.stream WHEN 'fz_fast' THEN (SELECT count(*) FROM fz_fast)
                                  ELSE (SELECT count(*) FROM fz_slow) END AS accepted_stored,
       r.dead_lettered = (SELECT count(*) FROM fz_dead d WHERE d.stream = r.stream) AS dead_stored
FROM fz_results r ORDER BY r.stream;

-- The mutations hit every kind of message often enough to mean something.
SELECT count(*) FILTER (WHERE verdict = 'invalid') > 1000 AS many_invalid,
       count(*) FILTER (WHERE verdict = 'flat object') > 300 AS many_flat,
       count(*) FILTER (WHERE verdict = 'nested object') > 100 AS many_nested,
       count(*) FILTER (WHERE verdict = 'not an object') > 0 AS some_not_objects,
       count(*) FILTER (WHERE verdict = 'number out of range') > 0 AS some_out_of_range
FROM fz_msgs;

-- Both paths store the same values and dead-letter the same messages.
SELECT count(*) AS rows_only_fast FROM (SELECT a, b, c FROM fz_fast EXCEPT ALL SELECT a, b, c FROM fz_slow) x;
SELECT count(*) AS rows_only_slow FROM (SELECT a, b, c FROM fz_slow EXCEPT ALL SELECT a, b, c FROM fz_fast) x;
SELECT count(*) AS dead_only_fast FROM (SELECT m FROM fz_dead WHERE stream = 'fz_fast'
                                        EXCEPT ALL SELECT m FROM fz_dead WHERE stream = 'fz_slow') x;
SELECT count(*) AS dead_only_slow FROM (SELECT m FROM fz_dead WHERE stream = 'fz_slow'
                                        EXCEPT ALL SELECT m FROM fz_dead WHERE stream = 'fz_fast') x;

-- PostgreSQL is the judge: invalid JSON, non-objects and numbers jsonb cannot hold are dead
-- letters; objects, flat or nested, land (text and jsonb columns take any value).
SELECT verdict, count(*) FILTER (WHERE dead) > 0 AS any_dead, bool_and(dead) AS all_dead
FROM (SELECT verdict, m IN (SELECT m FROM fz_dead WHERE stream = 'fz_fast') AS dead FROM fz_msgs) x
GROUP BY verdict ORDER BY verdict;

-- Clean up.
SELECT tributary.drop_stream('fz_fast');
SELECT tributary.drop_stream('fz_slow');
DROP VIEW fz_dead;
DROP TABLE fz_fast, fz_slow, fz_seeds, fz_msgs, fz_results;
DROP FUNCTION fz_mutate(text, int);
DROP FUNCTION fz_verdict(text);
RESET client_min_messages;
