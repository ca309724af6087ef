--
-- ingest: the json path in depth. Rows land through tributary's insert loop, so defaults, constraints,
-- triggers, partition routing, domains and generated columns behave as for COPY; a
-- message that cannot land becomes a dead letter and the others land.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET extra_float_digits = 0;

-- The dead letters of one stream, without timestamps or ids.
CREATE FUNCTION ing_dead(s text)
RETURNS TABLE (payload text, error text, sqlstate text, detail text, attempts integer)
LANGUAGE sql AS $$
    SELECT payload_text(d.payload), d.error, d.sqlstate, d.detail, d.attempts
    FROM tributary.dead_letters d WHERE d.stream = s ORDER BY d.id
$$;
-- The counters of one stream.
CREATE FUNCTION ing_stats(s text)
RETURNS TABLE (messages bigint, rows bigint, dead_letters bigint, bytes bigint, batches bigint)
LANGUAGE sql AS $$
    SELECT messages, rows, dead_letters, bytes, batches
    FROM tributary.stream_stats WHERE stream = s
$$;

--
-- Every kind of column.
--
CREATE TABLE ing_all (
    id          integer,
    name        text,
    qty         integer DEFAULT 7,
    seq         serial,
    price       numeric,
    ratio       float8,
    big         bigint,
    flag        boolean,
    at          timestamptz,
    day         date,
    doc         jsonb,
    doc_j       json,
    ints        integer[],
    tags        text[],
    grid        integer[][],
    raw         bytea,
    uid         uuid
);
SELECT tributary.create_stream('ing_all', 'ing_all');

-- A mixed batch: good rows land, bad ones are dead-lettered with their error.
SELECT * FROM tributary.ingest('ing_all', ARRAY[
    '{"id": 1, "name": "one"}',
    '{"id": "not a number"}',
    '{"id": 3, "name": "three"}',
    'not json at all',
    '[1, 2, 3]',
    '"just a string"',
    '42',
    '',
    '{"id": 9, "name": "nine"',
    '{"id": 10, "flag": "maybe"}',
    '{"id": 11, "at": "yesterday-ish"}',
    '{"id": 12, "ints": [1, "x"]}',
    '{"id": 13, "big": 99999999999999999999}',
    '{"id": 14, "uid": "not-a-uuid"}',
    '{"id": 15, "name": "fifteen"}'
]);
SELECT id, name, qty, seq FROM ing_all ORDER BY id;
SELECT * FROM ing_dead('ing_all');
SELECT * FROM ing_stats('ing_all');
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';
ALTER SEQUENCE ing_all_seq_seq RESTART;

-- Defaults for absent keys (a DEFAULT and a serial), explicit null gives NULL even over a
-- default, unknown keys are ignored, the last of duplicate keys wins. A message that
-- names no column at all is a row of defaults, like INSERT ... DEFAULT VALUES.
SELECT * FROM tributary.ingest('ing_all', ARRAY[
    '{"id": 1}',
    '{"id": 2, "qty": null, "name": null}',
    '{"id": 3, "unknown": "ignored", "also": {"nested": [1, 2]}, "name": "three"}',
    '{"id": 4, "name": "first", "name": "second", "name": "last"}',
    '{"id": 5, "qty": 50}',
    '{}',
    '{"only": "unknown keys"}'
]);
SELECT id, name, qty, seq, qty IS NULL AS qty_null FROM ing_all ORDER BY seq;
SELECT * FROM ing_dead('ing_all');
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';

-- Numbers, booleans, timestamps and dates.
SELECT * FROM tributary.ingest('ing_all', ARRAY[
    '{"id": 1, "price": 1.50, "ratio": 0.25, "big": 9007199254740993, "flag": true}',
    '{"id": 2, "price": -0.000001, "ratio": 1e3, "big": -1, "flag": false}',
    '{"id": 3, "price": 12345678901234567890.123456789, "ratio": -2.5E-3, "big": 0}',
    '{"id": 4, "price": "7.25", "ratio": "NaN", "big": "42", "flag": "yes"}',
    '{"id": 5, "ratio": "Infinity", "flag": "f"}',
    '{"id": 6, "at": "2024-01-02T03:04:05Z", "day": "2024-02-29"}',
    '{"id": 7, "at": "2024-01-02 03:04:05.123456+02:00", "day": "2024-12-31"}',
    '{"id": 8, "at": "2024-06-30T23:59:59.999999-07:00"}',
    '{"id": 9, "name": 12.50, "flag": 1}',
    '{"id": 10, "name": true}',
    '{"id": 11, "price": 1.5e2, "qty": 7.0}',
    '{"id": 12, "qty": 2147483648}'
]);
SELECT id, price, ratio, big, flag, at, day, name FROM ing_all ORDER BY id;
SELECT * FROM ing_dead('ing_all');
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';

-- Objects and arrays: jsonb and json columns take the JSON text; array columns take a
-- JSON array; any other column takes the JSON text and its input function decides.
SELECT * FROM tributary.ingest('ing_all', ARRAY[
    '{"id": 1, "doc": {"a": 1, "b": [true, null, "x"], "c": {"d": "e\tf"}}, "doc_j": {"keep":  "spacing", "k": 1, "k": 2}}',
    '{"id": 2, "doc": "a string", "doc_j": 12.5}',
    '{"id": 3, "doc": [1, "two", {"three": 3}], "doc_j": []}',
    '{"id": 4, "doc": null, "doc_j": null}',
    '{"id": 5, "ints": [1, 2, 3], "tags": ["a", "b"]}',
    '{"id": 6, "ints": [], "tags": []}',
    '{"id": 7, "ints": [1, null, 3], "tags": [null, "NULL", "null"]}',
    '{"id": 8, "tags": ["with \"quotes\"", "with, comma", "with \\ backslash", "{braces}", " spaced ", ""]}',
    '{"id": 9, "tags": ["tab\there", "new\nline", "uni\u00e9\u4e2d", "emoji \ud83d\ude00"]}',
    '{"id": 10, "grid": [[1, 2], [3, 4]]}',
    '{"id": 11, "tags": ["s", 1, true, 2.5, {"k": "v"}]}',
    '{"id": 12, "name": [1, 2], "doc_j": {"a": [1, {"b": 2}]}}',
    '{"id": 13, "name": {"an": "object"}}',
    '{"id": 14, "ints": "{5,6}"}',
    '{"id": 15, "ints": {"not": "an array"}}',
    '{"id": 16, "grid": [[1, 2], [3]]}',
    '{"id": 17, "ints": [1.5]}',
    '{"id": 18, "ints": [1, [2]]}'
]);
SELECT id, doc, doc_j, ints, tags, grid, name FROM ing_all WHERE id <> 9 ORDER BY id;
SELECT id, tags[1] AS t1, tags[2] AS t2, tags[3] AS t3, tags[4] AS t4, tags[5] AS t5,
       tags[6] = '' AS t6_empty, array_length(tags, 1) AS n
FROM ing_all WHERE id IN (7, 8, 11) ORDER BY id;
-- exact round trip of the awkward strings
SELECT tags = ARRAY['with "quotes"', 'with, comma', 'with \ backslash', '{braces}', ' spaced ', '']
       AS exact
FROM ing_all WHERE id = 8;
SELECT tags = ARRAY[E'tab\there', E'new\nline', 'unié中', 'emoji 😀'] AS exact
FROM ing_all WHERE id = 9;
SELECT * FROM ing_dead('ing_all');
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';

-- Strings with tabs, newlines, carriage returns, backslashes, quotes, COPY's own
-- markers and unicode escapes arrive exactly as sent.
SELECT * FROM tributary.ingest('ing_all', ARRAY[
    '{"id": 1, "name": "tab\there"}',
    '{"id": 2, "name": "line1\nline2\r\nline3"}',
    '{"id": 3, "name": "back\\slash \\N \\t \\\\ end\\"}',
    '{"id": 4, "name": "\\N"}',
    '{"id": 5, "name": "quote \" and solidus \/"}',
    '{"id": 6, "name": "\u00e9\u00E8 \u4e2d\u6587 \ud83d\ude00 \u0007"}',
    '{"id": 7, "name": "raw é 中 😀"}',
    '{"id": 8, "name": ""}',
    '{"id": 9, "name": "\b\f"}',
    '{"id": 10, "name": "."}',
    '{"id": 11, "name": "\u0000"}'
]);
SELECT id, name = expected AS exact, length(name) AS len
FROM ing_all JOIN (VALUES
    (1, E'tab\there'),
    (2, E'line1\nline2\r\nline3'),
    (3, E'back\\slash \\N \\t \\\\ end\\'),
    (4, E'\\N'),
    (5, 'quote " and solidus /'),
    (6, E'éè 中文 😀 \u0007'),
    (7, 'raw é 中 😀'),
    (8, ''),
    (9, E'\b\f'),
    (10, '.')
) AS e (eid, expected) ON e.eid = id
ORDER BY id;
SELECT count(*) FILTER (WHERE name IS NULL) AS nulls FROM ing_all;
SELECT * FROM ing_dead('ing_all');
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';

-- The single-message forms and the array forms, for text, bytea and jsonb payloads.
SELECT * FROM tributary.ingest('ing_all', '{"id": 1, "name": "text"}'::text);
SELECT * FROM tributary.ingest('ing_all', convert_to('{"id": 2, "name": "bytea é"}', 'UTF8'));
SELECT * FROM tributary.ingest('ing_all', '{"id": 3, "name": "jsonb", "tags": ["x\ty"]}'::jsonb);
SELECT * FROM tributary.ingest('ing_all', ARRAY['{"id": 4}', '{"id": 5}']::text[]);
SELECT * FROM tributary.ingest('ing_all', ARRAY[convert_to('{"id": 6}', 'UTF8'), '\xff'::bytea]);
SELECT * FROM tributary.ingest('ing_all', ARRAY['{"id": 7}'::jsonb, '[7]'::jsonb, '{"id": "x"}'::jsonb]);
-- an empty batch is fine
SELECT * FROM tributary.ingest('ing_all', ARRAY[]::text[]);
SELECT * FROM tributary.ingest('ing_all', '{}'::jsonb[]);
-- named parameters
SELECT * FROM tributary.ingest(payload => '{"id": 8}'::text, name => 'ing_all');
SELECT * FROM tributary.ingest(name => 'ing_all', payloads => ARRAY['{"id": 9}']);
SELECT id, name, tags = ARRAY[E'x\ty'] AS tab_in_tag FROM ing_all ORDER BY id;
SELECT * FROM ing_dead('ing_all');
-- the ingest_result type
SELECT pg_typeof(r), r.accepted, r.dead_lettered
FROM tributary.ingest('ing_all', ARRAY['{"id": 10}', 'x']) AS r;
TRUNCATE ing_all;
DELETE FROM tributary.dead_letters WHERE stream = 'ing_all';

--
-- The overflow column keeps the keys that match no column.
--
CREATE TABLE ing_ovf (id integer, note text, extra jsonb DEFAULT '{"default": true}');
SELECT tributary.create_stream('ing_ovf', 'ing_ovf', 'local', '{"overflow": "extra"}');
SELECT * FROM tributary.ingest('ing_ovf', ARRAY[
    '{"id": 1, "note": "no extras"}',
    '{"id": 2, "colour": "red", "size": {"w": 1, "h": [2, 3]}, "note": "n"}',
    '{"id": 3, "dup": 1, "dup": 2}',
    '{"id": 4, "we\"ird\tkey": "v", "é": "ü"}',
    '{"id": 5, "extra": {"the": "overflow column itself"}}',
    '{"id": 6, "nil": null, "arr": [], "obj": {}}',
    '{"id": 7, "text": "a\\b\nc"}'
]);
SELECT id, note, extra FROM ing_ovf ORDER BY id;
SELECT extra ->> 'we"ird' || E'\tkey' IS NULL AS weird_key_not_split,
       extra ->> E'we"ird\tkey' AS weird_value,
       extra ->> 'é' AS accented
FROM ing_ovf WHERE id = 4;
SELECT extra ->> 'text' = E'a\\b\nc' AS exact FROM ing_ovf WHERE id = 7;
-- a json (not jsonb) overflow column
CREATE TABLE ing_ovf_json (id integer, extra json);
SELECT tributary.create_stream('ing_ovf_json', 'ing_ovf_json', 'local', '{"overflow": "extra"}');
SELECT * FROM tributary.ingest('ing_ovf_json', '{"id": 1, "b": 2, "a": [1]}');
SELECT id, extra::text FROM ing_ovf_json;

--
-- Constraints: CHECK, NOT NULL, UNIQUE (within one batch the first row wins) and a
-- foreign key.
--
CREATE TABLE ing_parent (code text PRIMARY KEY);
INSERT INTO ing_parent VALUES ('a'), ('b');
CREATE TABLE ing_con (
    id      integer NOT NULL UNIQUE,
    qty     integer CHECK (qty > 0),
    label   text NOT NULL DEFAULT 'none',
    code    text REFERENCES ing_parent
);
SELECT tributary.create_stream('ing_con', 'ing_con');
SELECT * FROM tributary.ingest('ing_con', ARRAY[
    '{"id": 1, "qty": 1, "label": "first"}',
    '{"id": 1, "qty": 2, "label": "duplicate of 1"}',
    '{"id": 2, "qty": 0}',
    '{"id": null, "qty": 3}',
    '{"qty": 4}',
    '{"id": 5, "label": null}',
    '{"id": 6, "qty": 6, "code": "a"}',
    '{"id": 7, "code": "zzz"}',
    '{"id": 8, "qty": -8}',
    '{"id": 9, "label": "ok"}',
    '{"id": 9, "label": "duplicate of 9"}',
    '{"id": 9, "label": "another duplicate of 9"}'
]);
SELECT * FROM ing_con ORDER BY id;
SELECT * FROM ing_dead('ing_con');
-- a duplicate of a row committed earlier
SELECT * FROM tributary.ingest('ing_con', ARRAY['{"id": 1, "label": "again"}', '{"id": 10}']);
SELECT id, label FROM ing_con ORDER BY id;
SELECT payload, sqlstate, detail FROM ing_dead('ing_con') WHERE payload LIKE '%again%';

-- Many rows with a few bad ones scattered through the batch: only those are dead.
SELECT * FROM tributary.ingest('ing_con', (
    SELECT array_agg(CASE WHEN g % 250 = 0 THEN format('{"id": %s, "qty": -1}', g)
                          WHEN g = 777 THEN '{"id": 100}'
                          ELSE format('{"id": %s, "qty": %s}', g, g) END ORDER BY g)
    FROM generate_series(100, 2099) g));
SELECT count(*), min(id), max(id) FROM ing_con WHERE id >= 100;
SELECT payload, sqlstate FROM ing_dead('ing_con') WHERE payload LIKE '%"qty": -1%' OR payload = '{"id": 100}';

--
-- Triggers: a BEFORE ROW trigger that changes the row, one that raises, one that skips
-- the row, and an AFTER trigger that writes an audit table.
--
CREATE TABLE ing_trg (id integer, name text, touched boolean DEFAULT false);
CREATE TABLE ing_audit (id integer, name text);
CREATE FUNCTION ing_trg_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'boom' THEN
        RAISE EXCEPTION 'row % is not welcome', NEW.id
            USING DETAIL = 'The trigger said so.', HINT = 'Do not send boom.';
    END IF;
    IF NEW.name = 'skip' THEN
        RETURN NULL;
    END IF;
    NEW.name := upper(NEW.name);
    NEW.touched := true;
    RETURN NEW;
END
$$;
CREATE FUNCTION ing_trg_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ing_audit VALUES (NEW.id, NEW.name);
    RETURN NULL;
END
$$;
CREATE TRIGGER ing_trg_before BEFORE INSERT ON ing_trg FOR EACH ROW EXECUTE FUNCTION ing_trg_before();
CREATE TRIGGER ing_trg_after AFTER INSERT ON ing_trg FOR EACH ROW EXECUTE FUNCTION ing_trg_after();
SELECT tributary.create_stream('ing_trg', 'ing_trg');
SELECT * FROM tributary.ingest('ing_trg', ARRAY[
    '{"id": 1, "name": "alpha"}',
    '{"id": 2, "name": "boom"}',
    '{"id": 3, "name": "gamma"}',
    '{"id": 4, "name": "skip"}',
    '{"id": 5, "name": "boom"}',
    '{"id": 6, "name": "epsilon"}'
]);
SELECT * FROM ing_trg ORDER BY id;
-- the audit holds each landed row exactly once (retried runs were rolled back)
SELECT * FROM ing_audit ORDER BY id;
SELECT * FROM ing_dead('ing_trg');
-- a skipped row is accepted (the message was handled) but stores no row
SELECT * FROM ing_stats('ing_trg');

--
-- A partitioned target: rows are routed; a row with no partition is dead.
--
CREATE TABLE ing_part (id integer, region text, v text) PARTITION BY LIST (region);
CREATE TABLE ing_part_eu PARTITION OF ing_part FOR VALUES IN ('eu');
CREATE TABLE ing_part_us PARTITION OF ing_part FOR VALUES IN ('us');
SELECT tributary.create_stream('ing_part', 'ing_part');
SELECT * FROM tributary.ingest('ing_part', ARRAY[
    '{"id": 1, "region": "eu", "v": "a"}',
    '{"id": 2, "region": "us", "v": "b"}',
    '{"id": 3, "region": "apac", "v": "c"}',
    '{"id": 4, "region": "eu", "v": "d"}',
    '{"id": 5, "v": "no region"}'
]);
SELECT tableoid::regclass AS partition, id, region, v FROM ing_part ORDER BY id;
SELECT * FROM ing_dead('ing_part');

--
-- A domain with a CHECK, and a generated column.
--
CREATE DOMAIN ing_posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN ing_tags AS text[] CHECK (cardinality(VALUE) < 3);
CREATE TABLE ing_dom (
    id      ing_posint,
    qty     integer,
    price   numeric,
    total   numeric GENERATED ALWAYS AS (qty * price) STORED,
    tags    ing_tags
);
SELECT tributary.create_stream('ing_dom', 'ing_dom');
SELECT * FROM tributary.ingest('ing_dom', ARRAY[
    '{"id": 1, "qty": 2, "price": 2.5}',
    '{"id": -1, "qty": 1, "price": 1}',
    '{"id": 2, "qty": 3, "price": 1, "total": 999}',
    '{"id": 3, "tags": ["a", "b"]}',
    '{"id": 4, "tags": ["a", "b", "c"]}'
]);
SELECT * FROM ing_dom ORDER BY id;
SELECT * FROM ing_dead('ing_dom');

--
-- A target with a dropped column (its attribute stays in the catalog as dropped).
--
CREATE TABLE ing_dropped (id integer, gone text, name text);
ALTER TABLE ing_dropped DROP COLUMN gone;
SELECT tributary.create_stream('ing_dropped', 'ing_dropped');
SELECT * FROM tributary.ingest('ing_dropped', ARRAY['{"id": 1, "name": "after drop"}', '{"id": 2, "gone": "x"}']);
SELECT * FROM ing_dropped ORDER BY id;

--
-- Transactions: ingest runs in the caller's transaction. A rollback takes the rows,
-- the dead letters and the counters with it; so does a rollback to a savepoint.
--
CREATE TABLE ing_tx (id integer PRIMARY KEY);
SELECT tributary.create_stream('ing_tx', 'ing_tx');
SELECT * FROM ing_stats('ing_tx');

BEGIN;
SELECT * FROM tributary.ingest('ing_tx', ARRAY['{"id": 1}', '{"id": "bad"}']);
SELECT count(*) AS rows_inside FROM ing_tx;
SELECT count(*) AS dead_inside FROM tributary.dead_letters WHERE stream = 'ing_tx';
ROLLBACK;
SELECT count(*) AS rows_after FROM ing_tx;
SELECT count(*) AS dead_after FROM tributary.dead_letters WHERE stream = 'ing_tx';
SELECT * FROM ing_stats('ing_tx');

BEGIN;
SELECT * FROM tributary.ingest('ing_tx', ARRAY['{"id": 1}', '{"id": "bad 1"}']);
SAVEPOINT s1;
SELECT * FROM tributary.ingest('ing_tx', ARRAY['{"id": 2}', '{"id": "bad 2"}']);
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT * FROM tributary.ingest('ing_tx', ARRAY['{"id": 3}', '{"id": "bad 3"}']);
RELEASE SAVEPOINT s2;
COMMIT;
SELECT * FROM ing_tx ORDER BY id;
SELECT payload FROM ing_dead('ing_tx');
-- counters: two batches of two messages each, one row and one dead letter per batch
SELECT * FROM ing_stats('ing_tx');

-- An error after the ingest aborts the transaction: nothing of it stays.
BEGIN;
SELECT * FROM tributary.ingest('ing_tx', ARRAY['{"id": 4}', '{"id": "bad 4"}']);
SELECT 1 / 0;
COMMIT;
SELECT count(*) AS rows_with_id_4 FROM ing_tx WHERE id = 4;
SELECT count(*) AS dead_bad_4 FROM tributary.dead_letters WHERE stream = 'ing_tx' AND convert_from(payload, 'UTF8') LIKE '%bad 4%';
SELECT * FROM ing_stats('ing_tx');

-- Counters of a committed autocommit ingest.
SELECT * FROM tributary.ingest('ing_tx', '{"id": 5}');
SELECT * FROM ing_stats('ing_tx');

-- Ingest from inside a function and a DO block (the same transaction rules).
DO $$
BEGIN
    PERFORM tributary.ingest('ing_tx', '{"id": 6}');
    PERFORM tributary.ingest('ing_tx', ARRAY['{"id": 7}', '{"id": 7}']);
END
$$;
SELECT * FROM ing_tx ORDER BY id;
SELECT * FROM ing_stats('ing_tx');

--
-- Errors a message causes outside the usual data classes are still its own: a JSON
-- array with more dimensions than an array can have, an index row that is too large,
-- nesting deep enough to exhaust the parser's stack. They are dead letters; the rest lands.
--
CREATE TABLE ing_limits (id int, ints int[], docs jsonb[], label text);
CREATE INDEX ing_limits_label ON ing_limits (label);
SELECT tributary.create_stream('ing_limits', 'ing_limits');
SELECT * FROM tributary.ingest('ing_limits', ARRAY[
    '{"id": 1, "ints": [[[[[[1]]]]]]}',
    '{"id": 2, "ints": [[[[[[[1]]]]]]]}',
    '{"id": 3, "label": "' || (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i) || '"}',
    '{"id": 4, "ints": ' || repeat('[', 100000) || '}',
    '{"id": 5, "ints": [1, 2]}']);
SELECT id, ints FROM ing_limits ORDER BY id;
SELECT left(payload, 30) AS payload, error, sqlstate, left(detail, 60) AS detail
FROM ing_dead('ing_limits');

-- json[] and jsonb[] columns take each element's JSON text: strings stay JSON strings,
-- objects and nested arrays stay whole.
SELECT * FROM tributary.ingest('ing_limits',
    '{"id": 6, "docs": ["a", {"k": [1, "x\u0022y"]}, [1, [2]], null, 3.5]}');
SELECT id, docs, docs[2] -> 'k' ->> 1 AS nested_string FROM ing_limits WHERE id = 6;

-- A GENERATED ALWAYS AS IDENTITY column is not written by a message (INSERT would
-- refuse; COPY would override silently), so its key is ignored and the identity is used.
CREATE TABLE ing_ident (id bigint GENERATED ALWAYS AS IDENTITY, v text);
SELECT tributary.create_stream('ing_ident', 'ing_ident');
SELECT * FROM tributary.ingest('ing_ident', ARRAY['{"id": 100, "v": "a"}', '{"v": "b"}']);
SELECT id, v FROM ing_ident ORDER BY id;

-- integer, bigint, timestamp and timestamptz values of the commonest shapes are built
-- directly (formats/convert.c); every value must equal what the input function gives,
-- and what it refuses must still be refused with its own error. The session's time
-- zone is not UTC here, so a zone-less timestamptz shows that it still applies.
SET TimeZone = 'Asia/Kolkata';
CREATE TABLE ing_conv (n integer, i4 integer, i8 bigint, ts timestamp, tz timestamptz,
                       s4 text, s8 text, sts text, stz text);
SELECT tributary.create_stream('ing_conv', 'ing_conv');
CREATE TEMP TABLE ing_conv_in (n serial, col text, v text);
INSERT INTO ing_conv_in (col, v) VALUES
    ('4', '0'), ('4', '-0'), ('4', '+17'), ('4', '007'), ('4', '123456789'), ('4', '-2147483648'),
    ('4', '2147483647'), ('4', '2147483648'), ('4', ' 42 '), ('4', '4x'), ('4', ''), ('4', '-'),
    ('8', '-9223372036854775808'), ('8', '9223372036854775807'), ('8', '9223372036854775808'),
    ('8', '123456789012345678'), ('8', '1234567890123456789'), ('8', '+0'), ('8', '1e3'),
    ('tz', '2026-11-23T00:00:00.001Z'), ('tz', '2026-11-23 23:59:59.999999+05:30'),
    ('tz', '2024-02-29T12:00:00-0800'), ('tz', '2023-02-29T12:00:00Z'), ('tz', '2026-11-23T00:00:00+15'),
    ('tz', '2026-11-23T00:00:00+16'), ('tz', '2026-11-23T00:00:00+05:60'), ('tz', '2026-11-23T00:00:00'),
    ('tz', '2026-11-23T24:00:00Z'), ('tz', '2026-12-31T23:59:60Z'), ('tz', '2026-11-23T00:00:00.1234567Z'),
    ('tz', '2026-11-23t00:00:00z'), ('tz', '0001-01-01T00:00:00Z'), ('tz', '9999-12-31T23:59:59-15:00'),
    ('tz', '2026-11-23T00:00:00.Z'), ('tz', '2026-13-01T00:00:00Z'), ('tz', '2026-04-31T00:00:00Z'),
    ('tz', '2026-11-23T00:00:00 Z'), ('tz', '2026-11-23T00:00:00EST'), ('tz', 'infinity'),
    ('tz', '1900-02-29T00:00:00Z'), ('tz', '2000-02-29T00:00:00.5+01'),
    ('ts', '2026-11-23T10:11:12.5'), ('ts', '2026-11-23 10:11:12+05:30'), ('ts', '2026-11-23T10:11:12Z'),
    ('ts', '2026-02-29T00:00:00'), ('ts', '2026-11-23T10:11:12.0000005'),
    ('ts', '2026-11-23T10:11:12.07'), ('ts', '2026-11-23T10:11:12.0450'), ('tz', '2026-11-23T10:11:12.12345Z');
SELECT * FROM tributary.ingest('ing_conv', ARRAY(
    SELECT jsonb_build_object('n', n, CASE col WHEN '4' THEN 'i4' WHEN '8' THEN 'i8' ELSE col END, v,
                              CASE col WHEN '4' THEN 's4' WHEN '8' THEN 's8' ELSE 's' || col END, v)::text
    FROM ing_conv_in ORDER BY n));
-- stored values that differ from the input function's (none)
SELECT n, i4, i8, ts, tz FROM ing_conv
WHERE i4 IS DISTINCT FROM s4::integer OR i8 IS DISTINCT FROM s8::bigint
   OR ts IS DISTINCT FROM sts::timestamp OR tz IS DISTINCT FROM stz::timestamptz;
-- the values stored, and the ones refused with the input function's error
SELECT i.n, i.col, i.v, coalesce(c.i4::text, c.i8::text, c.ts::text, c.tz::text) AS stored
FROM ing_conv_in i JOIN ing_conv c USING (n) ORDER BY i.n;
SELECT (payload_text(d.payload)::jsonb ->> 'n')::int AS n, d.error, d.sqlstate
FROM tributary.dead_letters d WHERE d.stream = 'ing_conv' ORDER BY 1;
SET TimeZone = 'UTC';

-- double precision: decimals of at most 19 significant digits, with or without an exponent,
-- are built directly (float8.c: Clinger's fast path, Eisel-Lemire); every stored value must
-- be bit for bit what float8in gives, for edge cases, for 20000 decimals of 1 to 19 digits
-- with the point anywhere, for 5000 doubles as PostgreSQL prints them (the shortest form
-- that reads back, 15 to 17 digits, exponents from e-30 to e+30) and for powers of ten
-- from the subnormals to the top of the range, as JSON numbers and as strings.
CREATE TABLE ing_f8 (n integer, f float8, s text);
SELECT tributary.create_stream('ing_f8', 'ing_f8');
CREATE TEMP TABLE ing_f8_in (n serial, v text);
INSERT INTO ing_f8_in (v) VALUES
    ('0'), ('-0'), ('+0'), ('-0.0'), ('0.1'), ('.5'), ('5.'), ('00001.50000'), ('123456789012345'),
    ('1234567890123456'), ('9007199254740993'), ('0.000000000000000000001'),
    ('0.0000000000000000000001'), ('0.00000000000000000000001'), ('999999999999999.9'),
    ('0.14285714285714285'), ('0.2857142857142857'), ('1e3'), ('1.5E-3'), ('NaN'), ('-Infinity'),
    (' 1'), ('1 '), ('.'), ('-'), (''), ('1..2'), ('0x10'), ('1,5');
SELECT setseed(0.25);
INSERT INTO ing_f8_in (v)
SELECT CASE WHEN g % 4 = 0 THEN '-' ELSE '' END ||
       trunc((random() * 10 ^ (1 + g % 19))::numeric, 0)::text AS digits
FROM generate_series(1, 20000) AS g;
-- put the point at a place of each generated number's own (or none)
UPDATE ing_f8_in
SET v = CASE WHEN n % 7 = 0 THEN v
             ELSE left(v, length(v) - n % length(v)) || '.' || right(v, n % length(v)) END
WHERE n > 29 AND length(v) > 1 AND v !~ '^-.$';
SET extra_float_digits = 1;	-- pg_regress sets 0; 1 prints the shortest exact form
INSERT INTO ing_f8_in (v)
SELECT ((random() - 0.5) * 10 ^ (g % 61 - 30))::float8::text FROM generate_series(1, 5000) AS g;
SET extra_float_digits = 0;
INSERT INTO ing_f8_in (v) SELECT '1e' || g FROM generate_series(-322, 308, 7) AS g;
SELECT count(*) FILTER (WHERE v ~ '^-?[0-9]\.[0-9]{15,16}e') AS printed_17_digits,
       count(*) FILTER (WHERE v ~ 'e') AS with_exponent
FROM ing_f8_in WHERE n > 20029;
SELECT * FROM tributary.ingest('ing_f8', ARRAY(
    SELECT CASE WHEN n % 2 = 0 AND v ~ '^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$'
                THEN format('{"n": %s, "f": %s, "s": %s}', n, v, to_json(v))
                ELSE jsonb_build_object('n', n, 'f', v, 's', v)::text END
    FROM ing_f8_in ORDER BY n));
SELECT count(*) AS rows, count(*) FILTER (WHERE s ~ '^-?[0-9]*\.?[0-9]*$') AS plain FROM ing_f8;
-- stored values whose bits differ from float8in's (none)
SELECT n, s, f FROM ing_f8 WHERE float8send(f) IS DISTINCT FROM float8send(s::float8);
-- the edge cases: stored, or refused with float8in's error
SELECT i.n, i.v, f.f::text AS stored FROM ing_f8_in i LEFT JOIN ing_f8 f USING (n)
WHERE i.n <= 29 ORDER BY i.n;
SELECT (payload_text(d.payload)::jsonb ->> 'n')::int AS n, d.error, d.sqlstate
FROM tributary.dead_letters d WHERE d.stream = 'ing_f8' ORDER BY 1;

-- Clean up.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'ing\_%' ORDER BY name;
SELECT count(*) AS dead_letters_left FROM tributary.dead_letters;
DROP TABLE ing_all, ing_ovf, ing_ovf_json, ing_con, ing_parent, ing_trg, ing_audit, ing_part,
    ing_dom, ing_dropped, ing_tx, ing_limits, ing_ident, ing_conv, ing_f8;
DROP DOMAIN ing_posint, ing_tags;
DROP FUNCTION ing_trg_before(), ing_trg_after(), ing_dead(text), ing_stats(text);
