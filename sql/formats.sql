--
-- formats: csv, text and bytes (json is covered by ingest.sql).
--

CREATE FUNCTION fmt_dead(s text)
RETURNS TABLE (payload text, error text, sqlstate text, detail text)
LANGUAGE sql AS $$
    SELECT payload_text(d.payload), d.error, d.sqlstate, d.detail
    FROM tributary.dead_letters d WHERE d.stream = s ORDER BY d.id
$$;

--
-- csv: one RFC 4180 record per message, fields mapped in the order of "columns".
--
CREATE TABLE fmt_csv (id integer, name text, note text, extra integer DEFAULT 5);
SELECT tributary.create_stream('fmt_csv', 'fmt_csv', 'local',
                               '{"format": "csv", "columns": ["id", "name", "note"]}');
SELECT name, format, options FROM tributary.streams WHERE name = 'fmt_csv';
SELECT * FROM tributary.ingest('fmt_csv', ARRAY[
    '1,plain,x',
    '2,"quoted, with comma","say ""hi"""',
    E'3,"multi\nline",',
    '4,"",',
    E'5,a,b\n',
    E'6,a,b\r\n',
    '7,a',
    '8,a,b,c',
    '9,"abc',
    '10,"a"b,c',
    '11,a"b,c',
    E'12,back\\slash,tab\there',
    'x,a,b',
    E'14,a,b\n\n',
    '15, spaced ,x',
    '',
    ',,',
    '"",,""',
    E'19,\\N,x',
    E'20,"embedded\r\nCRLF",x',
    '21,"""",""""""',
    '22,"a,b,c"',
    '23,,"",'
]);
SELECT id, name, note, extra, name IS NULL AS name_null, note IS NULL AS note_null
FROM fmt_csv WHERE id NOT IN (3, 12, 14, 20) OR id IS NULL ORDER BY id;
-- the rows with control characters, compared exactly
SELECT id, name = expected_name AS name_exact, note IS NOT DISTINCT FROM expected_note AS note_exact
FROM fmt_csv JOIN (VALUES
    (3, E'multi\nline', NULL),
    (12, E'back\\slash', E'tab\there'),
    (14, 'a', E'b\n'),
    (20, E'embedded\r\nCRLF', 'x')
) AS e (eid, expected_name, expected_note) ON e.eid = id
ORDER BY id;
SELECT * FROM fmt_dead('fmt_csv');

-- A custom delimiter, and "columns" in another order than the table's.
CREATE TABLE fmt_csv2 (id integer, name text);
SELECT tributary.create_stream('fmt_pipe', 'fmt_csv2', 'local',
                               '{"format": "csv", "columns": ["name", "id"], "delimiter": "|"}');
SELECT * FROM tributary.ingest('fmt_pipe', ARRAY[
    'a|1',
    '"b|c"|2',
    'd,e|3',
    '"f""g"|4',
    'h|5|6'
]);
SELECT * FROM fmt_csv2 ORDER BY id;
SELECT * FROM fmt_dead('fmt_pipe');
TRUNCATE fmt_csv2;
-- tab and semicolon delimiters
SELECT tributary.create_stream('fmt_tab', 'fmt_csv2', 'local',
                               '{"format": "csv", "columns": ["id", "name"], "delimiter": "\t"}');
SELECT tributary.create_stream('fmt_semi', 'fmt_csv2', 'local',
                               '{"format": "csv", "columns": ["id", "name"], "delimiter": ";"}');
SELECT * FROM tributary.ingest('fmt_tab', ARRAY[E'1\tone', E'2\t"two\twith tab"', E'3\tthree,with,commas']);
SELECT * FROM tributary.ingest('fmt_semi', ARRAY['4;four', '5;"five;semi"', '6;six,comma']);
SELECT id, name = expected AS exact
FROM fmt_csv2 JOIN (VALUES (1, 'one'), (2, E'two\twith tab'), (3, 'three,with,commas'),
                           (4, 'four'), (5, 'five;semi'), (6, 'six,comma')) AS e (eid, expected)
     ON e.eid = id
ORDER BY id;
-- a single-column csv stream: an empty message is one NULL field
SELECT tributary.create_stream('fmt_one', 'fmt_csv2', 'local', '{"format": "csv", "columns": ["name"]}');
SELECT * FROM tributary.ingest('fmt_one', ARRAY['', '""', 'x', E'\n']);
SELECT name, name IS NULL AS is_null FROM fmt_csv2 WHERE id IS NULL ORDER BY name NULLS FIRST;
-- csv payloads as bytea, and one that is not UTF-8
SELECT * FROM tributary.ingest('fmt_pipe', ARRAY[convert_to('é|7', 'UTF8'), '\x41ff7c38'::bytea]);
SELECT * FROM fmt_csv2 WHERE id >= 7 ORDER BY id;
SELECT * FROM fmt_dead('fmt_pipe');

--
-- text: the whole payload goes into one column.
--
CREATE TABLE fmt_lines (line text);
-- the only writable column is the default
SELECT tributary.create_stream('fmt_lines', 'fmt_lines', 'local', '{"format": "text"}');
SELECT * FROM tributary.ingest('fmt_lines', ARRAY[
    'plain',
    E'tab\there',
    E'multi\nline\n',
    E'back\\slash \\N \\.',
    '',
    'unicode é 中 😀',
    '{"json": "stays text"}',
    E'\r\n'
]);
SELECT * FROM tributary.ingest('fmt_lines', '\xc328'::bytea);
SELECT * FROM tributary.ingest('fmt_lines', '\x610062'::bytea);
SELECT * FROM tributary.ingest('fmt_lines', convert_to('from bytea', 'UTF8'));
SELECT count(*) AS rows FROM fmt_lines;
SELECT line = expected AS exact, length(line) AS len
FROM fmt_lines JOIN (VALUES
    (1, 'plain'),
    (2, E'tab\there'),
    (3, E'multi\nline\n'),
    (4, E'back\\slash \\N \\.'),
    (5, ''),
    (6, 'unicode é 中 😀'),
    (7, '{"json": "stays text"}'),
    (8, E'\r\n'),
    (9, 'from bytea')
) AS e (n, expected) ON e.expected = line
ORDER BY n;
SELECT * FROM fmt_dead('fmt_lines');

-- A generated column does not count: the table still has exactly one writable column.
CREATE TABLE fmt_lines2 (line text, len integer GENERATED ALWAYS AS (length(line)) STORED);
SELECT tributary.create_stream('fmt_lines2', 'fmt_lines2', 'local', '{"format": "text"}');
SELECT * FROM tributary.ingest('fmt_lines2', ARRAY['abc', 'de']);
SELECT * FROM fmt_lines2 ORDER BY line;

-- "column" picks the column on a table with several; the others get their defaults.
CREATE TABLE fmt_multi (id serial, body varchar(10), n integer DEFAULT 0);
SELECT tributary.create_stream('fmt_multi', 'fmt_multi', 'local', '{"format": "text", "column": "body"}');
SELECT * FROM tributary.ingest('fmt_multi', ARRAY['first', 'second', 'far too long for ten', 'third']);
-- (ids are not shown: a retried COPY may consume serial values, as any failed INSERT does)
SELECT body, n FROM fmt_multi ORDER BY id;
SELECT * FROM fmt_dead('fmt_multi');
-- a text payload into a non-text column goes through its input function
SELECT tributary.create_stream('fmt_int', 'fmt_multi', 'local', '{"format": "text", "column": "n"}');
SELECT * FROM tributary.ingest('fmt_int', ARRAY['42', 'abc', ' 7 ']);
SELECT n FROM fmt_multi WHERE body IS NULL ORDER BY n;
SELECT * FROM fmt_dead('fmt_int');

--
-- bytes: the payload's bytes go into one bytea column, unchanged.
--
CREATE TABLE fmt_blobs (b bytea);
SELECT tributary.create_stream('fmt_blobs', 'fmt_blobs', 'local', '{"format": "bytes"}');
SELECT * FROM tributary.ingest('fmt_blobs', '\x00ff0a5c090d22275c4e'::bytea);
SELECT * FROM tributary.ingest('fmt_blobs', '\x'::bytea);
SELECT * FROM tributary.ingest('fmt_blobs', 'abc'::text);
SELECT * FROM tributary.ingest('fmt_blobs', E'é\t\\N'::text);
SELECT * FROM tributary.ingest('fmt_blobs', ARRAY['\x00'::bytea, '\xdeadbeef'::bytea, '\xc328'::bytea]);
SELECT * FROM tributary.ingest('fmt_blobs', ARRAY['x', 'y']);
SELECT b FROM fmt_blobs ORDER BY b;
-- every byte value, and a large payload
SELECT * FROM tributary.ingest('fmt_blobs', (SELECT string_agg(set_byte('\x00'::bytea, 0, g), ''::bytea ORDER BY g)
                                             FROM generate_series(0, 255) g));
SELECT * FROM tributary.ingest('fmt_blobs', decode(repeat('00ff5c0a', 50000), 'hex'));
SELECT length(b), md5(b) = md5(expected) AS exact
FROM fmt_blobs, LATERAL (SELECT CASE WHEN length(b) = 256
                                     THEN (SELECT string_agg(set_byte('\x00'::bytea, 0, g), ''::bytea ORDER BY g)
                                           FROM generate_series(0, 255) g)
                                     ELSE decode(repeat('00ff5c0a', 50000), 'hex') END AS expected) e
WHERE length(b) >= 256 ORDER BY length(b);
SELECT count(*) AS dead FROM tributary.dead_letters WHERE stream = 'fmt_blobs';

-- A batch larger than one COPY chunk (32 MiB of payload; these are 6 x 6 MiB) is inserted
-- in several, in order.
CREATE TABLE fmt_big (b bytea);
SELECT tributary.create_stream('fmt_big', 'fmt_big', 'local', '{"format": "bytes"}');
SELECT * FROM tributary.ingest('fmt_big',
    (SELECT array_agg(decode(repeat(to_hex(i), 12 * 1024 * 1024), 'hex') ORDER BY i)
     FROM generate_series(10, 15) AS i));
SELECT length(b) AS bytes, get_byte(b, 0) AS first_byte FROM fmt_big ORDER BY first_byte;
SELECT tributary.drop_stream('fmt_big');
DROP TABLE fmt_big;

-- "column" picks the bytea column of a wider table.
CREATE TABLE fmt_blobs2 (id serial, data bytea, note text DEFAULT 'n/a');
SELECT tributary.create_stream('fmt_blobs2', 'fmt_blobs2', 'local', '{"format": "bytes", "column": "data"}');
SELECT * FROM tributary.ingest('fmt_blobs2', ARRAY['\x0102'::bytea, '\x'::bytea]);
SELECT id, data, note FROM fmt_blobs2 ORDER BY id;

-- JSON: flat objects of plain values take a fast scanner, everything else PostgreSQL's
-- JSON parser. Both must agree with PostgreSQL on what is valid JSON and store the same
-- values: every message below lands if and only if it is a valid JSON object (all valid
-- ones fit the table).
CREATE FUNCTION fmt_is_json(m text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RETURN json_typeof(m::json) = 'object';
EXCEPTION WHEN invalid_text_representation THEN
    RETURN false;
END $$;
CREATE TABLE fmt_flat (id int, n numeric, f float8, b boolean, t text, j jsonb, arr int[]);
SELECT tributary.create_stream('fmt_flat', 'fmt_flat');
CREATE TABLE fmt_flat_msgs (k int, m text);
INSERT INTO fmt_flat_msgs VALUES
    (1, '{"id": 1, "t": "plain", "n": 1.5e3, "f": -0.25, "b": true, "j": "str"}'),
    (2, '{"id":2,"t":"dup","t":"last wins","n":-0,"b":false,"j":null}'),
    (3, E'\n{\t"id":3,\r\n"t" : "white space"\n}\n'),
    (4, '{"id": 4, "j": {"a": [1, 2]}, "arr": [1, 2]}'),
    (5, '{"id": 5, "t": "esc \"q\" \\ back"}'),
    (6, '{"\u0069d": 6, "t": "escaped key"}'),
    (7, '{"id": 7, "t": "ünïcødé ✓"}'),
    (8, '{"id": 8, "unknown": 1, "t": null}'),
    (9, '{}'),
    (10, '{"id": 01}'),
    (11, '{"id": 1.}'),
    (12, '{"id": -}'),
    (13, '{"id": 13, "b": truex}'),
    (14, E'{"id": 14, "t": "tab\there"}'),
    (15, '{"id": 15,}'),
    (16, '{"id": 16} x'),
    (17, '{"id": 17, "b": tru}'),
    (18, '{"id": 18 "t": "x"}'),
    (19, '{"id": .5}'),
    (20, '{"id": 20, "f": 1e}'),
    (21, '{"id": 21, "b": trueé}'),
    (22, '[1, 2]'),
    (23, '{"id": 23, "t": "unterminated}'),
    (24, '{"id": 24, "f": 1E+2, "n": -12.5e-1}'),
    (25, '{"id": 25, "j": 12, "t": "12", "arr": null}'),
    (26, '{"id": 26, "n": 1e40, "j": [], "t": ""}'),
    (27, '{"id":27}'),
    (28, '{"id": 28, "t": "x"'),
    (29, '{"id": 29, "t" "x"}'),
    (30, '{"id": 30, "n": 12a}');
SELECT * FROM tributary.ingest('fmt_flat', (SELECT array_agg(m ORDER BY k) FROM fmt_flat_msgs));
SELECT id, n, f, b, t, j, arr FROM fmt_flat ORDER BY id NULLS FIRST;
SELECT k, fmt_is_json(m) AS valid_json_object,
       EXISTS (SELECT FROM tributary.dead_letters d
               WHERE d.stream = 'fmt_flat' AND payload_text(d.payload) = m) AS dead_letter
FROM fmt_flat_msgs ORDER BY k;
SELECT count(*) AS disagreements FROM fmt_flat_msgs
WHERE fmt_is_json(m) = EXISTS (SELECT FROM tributary.dead_letters d
                               WHERE d.stream = 'fmt_flat' AND payload_text(d.payload) = m);
SELECT error, sqlstate, count(*) FROM tributary.dead_letters WHERE stream = 'fmt_flat'
GROUP BY error, sqlstate ORDER BY error;
DROP TABLE fmt_flat_msgs;
DROP FUNCTION fmt_is_json(text);

SELECT stream, messages, rows, dead_letters, batches FROM tributary.stream_stats
WHERE stream LIKE 'fmt\_%' ORDER BY stream;

-- Clean up.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'fmt\_%' ORDER BY name;
DROP TABLE fmt_csv, fmt_csv2, fmt_lines, fmt_lines2, fmt_multi, fmt_blobs, fmt_blobs2, fmt_flat;
DROP FUNCTION fmt_dead(text);
