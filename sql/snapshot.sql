--
-- snapshot: the latest record per key of a local stream (set_snapshot, snapshot,
-- snapshot_seq), seqs, coalescing, tombstones, 'source' and 'event_time' order, records as
-- they landed, row-level security on read, fan-out settings and channel names. What
-- listeners hear is tested with real LISTEN clients in test/integration/160_snapshot.pl.
--
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

CREATE TABLE sn_t (id text, qty integer, note text DEFAULT 'new', at timestamptz,
                   total integer GENERATED ALWAYS AS (qty * 10) STORED);
-- a trigger changes what lands: the snapshot holds the row as stored
CREATE FUNCTION sn_upper() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$;
CREATE TRIGGER sn_upper BEFORE INSERT ON sn_t FOR EACH ROW EXECUTE FUNCTION sn_upper();
SELECT tributary.create_stream('sn', 'sn_t', 'local', '{"format": "json"}', key => 'id', event_time => 'at');

-- Bad calls fail before anything changes.
CREATE TABLE sn_nokey (id text);
SELECT tributary.create_stream('sn_nokey', 'sn_nokey', 'local', '{"format": "json"}');
SELECT tributary.set_snapshot('sn_nokey');
SELECT tributary.set_snapshot('nope');
SELECT tributary.set_snapshot('sn', 'newest');
SELECT tributary.set_snapshot(NULL);
SELECT tributary.set_fanout('sn');
SELECT tributary.snapshot('sn');
SELECT tributary.snapshot_seq('sn');
SELECT tributary.drop_snapshot('sn');
SELECT tributary.drop_snapshot('sn', if_exists => true);
SELECT tributary.drop_fanout('sn', if_exists => true);
CREATE TABLE sn_noevent (id text);
SELECT tributary.create_stream('sn_noevent', 'sn_noevent', 'local', '{"format": "json"}', key => 'id');
SELECT tributary.set_snapshot('sn_noevent', 'event_time');
SELECT count(*) FROM tributary.snapshot_config;

SELECT tributary.set_snapshot('sn');
SELECT stream, "order", last_seq, channels FROM tributary.snapshot_config;
SELECT tributary.snapshot_seq('sn');
SELECT * FROM tributary.snapshot('sn');

-- A batch: k1 three times, k2 once, a row without a key. Only the newest state per key is
-- kept, and the keys take consecutive seqs in the order of their last change.
SELECT * FROM tributary.ingest('sn', ARRAY[
    '{"id": "k1", "qty": 1}', '{"id": "k2", "qty": 2, "note": "two"}', '{"id": "k1", "qty": 3}',
    '{"qty": 99}', '{"id": "k1", "qty": 4}']::jsonb[]);
SELECT key, seq, record, stream_seq FROM tributary.snapshot('sn');
SELECT tributary.snapshot_seq('sn');
-- the record is the row as stored: default, trigger and generated column applied
SELECT record ->> 'note' AS note, record ->> 'total' AS total FROM tributary.snapshot('sn', 'k1');
SELECT count(*) FROM tributary.snapshot('sn', 'nope');

-- Tombstones: a null payload with a key deletes the key (and takes a seq); deleting a key
-- that is not there changes nothing.
SELECT * FROM tributary.ingest('sn', ARRAY[NULL, NULL, '{"id": "k3", "qty": 7}']::jsonb[],
                               keys => ARRAY['k2', 'never', NULL]);
SELECT key, seq, record ->> 'qty' AS qty, stream_seq FROM tributary.snapshot('sn');
SELECT key, seq, record IS NULL AS deleted FROM tributary.snapshots WHERE stream = 'sn' ORDER BY key;
-- a deleted key comes back with its next upsert
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k2", "qty": 22}']::jsonb[]);
SELECT key, seq, record ->> 'qty' AS qty FROM tributary.snapshot('sn', 'k2');
-- upsert then delete in one batch of a key that was not there: no change at all
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k9", "qty": 9}', NULL]::jsonb[], keys => ARRAY[NULL, 'k9']);
SELECT tributary.snapshot_seq('sn'), (SELECT count(*) FROM tributary.snapshots WHERE key = 'k9');
-- a message without a key and without a payload, or keys that do not match, are refused
SELECT * FROM tributary.ingest('sn', ARRAY[NULL]::jsonb[], keys => ARRAY[NULL]::text[]);
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k1"}']::jsonb[], keys => ARRAY['a', 'b']);
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k1"}']::jsonb[], keys => NULL);
-- a stream without a snapshot dead-letters a tombstone, as a broker's empty message
SELECT * FROM tributary.ingest('sn_noevent', ARRAY[NULL]::jsonb[], keys => ARRAY['x']);
SELECT error FROM tributary.dead_letters WHERE stream = 'sn_noevent';
-- a batch whose rows all die changes nothing
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k1", "qty": "many"}']::jsonb[]);
SELECT tributary.snapshot_seq('sn');
-- a rolled back batch leaves no trace, and its seqs are given again
BEGIN;
SELECT * FROM tributary.ingest('sn', ARRAY['{"id": "k5", "qty": 5}']::jsonb[]);
SELECT tributary.snapshot_seq('sn');
ROLLBACK;
SELECT tributary.snapshot_seq('sn'), (SELECT count(*) FROM tributary.snapshot('sn', 'k5'));

-- 'event_time' order: an older event never overwrites a newer one, within a batch or across.
CREATE TABLE sn_ev (id text, v integer, at timestamptz);
SELECT tributary.create_stream('sn_ev', 'sn_ev', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
SELECT tributary.set_snapshot('sn_ev', 'event_time');
SELECT * FROM tributary.ingest('sn_ev', ARRAY[
    '{"id": "a", "v": 2, "at": "2026-01-01 10:00:02"}', '{"id": "a", "v": 1, "at": "2026-01-01 10:00:01"}',
    '{"id": "b", "v": 1, "at": "2026-01-01 10:00:01"}']::jsonb[]);
SELECT key, seq, record ->> 'v' AS v FROM tributary.snapshot('sn_ev');
SELECT * FROM tributary.ingest('sn_ev', ARRAY[
    '{"id": "a", "v": 0, "at": "2026-01-01 09:00:00"}', '{"id": "b", "v": 3, "at": "2026-01-01 10:00:03"}',
    '{"id": "a", "v": 9}']::jsonb[]);
-- a: the older event and the one without an event time lose; b: the newer wins
SELECT key, seq, record ->> 'v' AS v, stream_seq FROM tributary.snapshot('sn_ev');
-- an equal event time wins (the later message)
SELECT * FROM tributary.ingest('sn_ev', ARRAY['{"id": "b", "v": 4, "at": "2026-01-01 10:00:03"}']::jsonb[]);
SELECT key, seq, record ->> 'v' AS v FROM tributary.snapshot('sn_ev', 'b');
-- 'source' order: the last message wins whatever its event time
SELECT tributary.set_snapshot('sn_ev', 'source');
SELECT * FROM tributary.ingest('sn_ev', ARRAY['{"id": "b", "v": 5, "at": "2020-01-01"}']::jsonb[]);
SELECT key, seq, record ->> 'v' AS v FROM tributary.snapshot('sn_ev', 'b');

-- Reading a snapshot needs SELECT on the target; row-level security on the target applies.
CREATE ROLE sn_reader;
CREATE ROLE sn_other;
SET ROLE sn_reader;
SELECT * FROM tributary.snapshot('sn');
SELECT count(*) FROM tributary.snapshots;
RESET ROLE;
GRANT SELECT ON sn_t TO sn_reader, sn_other;
ALTER TABLE sn_t ENABLE ROW LEVEL SECURITY;
CREATE POLICY sn_mine ON sn_t FOR SELECT TO sn_reader USING (id IN ('k1', 'k3'));
SET ROLE sn_reader;
SELECT key, seq FROM tributary.snapshot('sn');
SELECT key FROM tributary.snapshot('sn', 'k2');
RESET ROLE;
-- no policy for sn_other: row-level security shows nothing
SET ROLE sn_other;
SELECT count(*) FROM tributary.snapshot('sn');
RESET ROLE;
-- the table's owner (not subject to its policies) sees every key
SELECT key FROM tributary.snapshot('sn');
ALTER TABLE sn_t DISABLE ROW LEVEL SECURITY;
SET ROLE sn_other;
SELECT count(*) FROM tributary.snapshot('sn');
-- nor may others change a stream's snapshot or fan-out
SELECT tributary.set_fanout('sn');
SELECT tributary.drop_snapshot('sn');
RESET ROLE;

-- Fan-out settings.
SELECT tributary.set_fanout('sn', channels => '{stream,room}');
SELECT tributary.set_fanout('sn', channels => '{stream,stream}');
SELECT tributary.set_fanout('sn', channels => '{}');
SELECT tributary.set_fanout('sn', channels => NULL);
SELECT tributary.set_fanout('sn', payload => 'all');
SELECT tributary.set_fanout('sn', heartbeat => '0 seconds');
SELECT tributary.set_fanout('sn', heartbeat => '1 month');
SELECT tributary.set_fanout('sn', min_interval => '0 seconds');
-- a stream named alerts keeps a snapshot, but its channel is everyone's alerts channel
SELECT tributary.create_stream('alerts', 'sn_t', 'local', '{"format": "json"}', key => 'id', enabled => false);
SELECT tributary.set_snapshot('alerts');
SELECT tributary.set_fanout('alerts');
SELECT tributary.drop_stream('alerts');
-- min_interval throttles key channels only: the stream's channel keeps every seq
SELECT tributary.set_fanout('sn', '{stream}', min_interval => '1 second');
SELECT channels, payload, heartbeat FROM tributary.snapshot_config WHERE stream = 'sn';
SELECT tributary.set_fanout('sn');
SELECT channels, payload, heartbeat FROM tributary.snapshot_config WHERE stream = 'sn';
SELECT tributary.set_fanout('sn', '{key}', 'keys', min_interval => '250 ms', heartbeat => NULL);
SELECT channels, payload, min_interval, heartbeat FROM tributary.snapshot_config WHERE stream = 'sn';
SELECT tributary.drop_fanout('sn');
SELECT tributary.drop_fanout('sn');
SELECT channels, payload, heartbeat FROM tributary.snapshot_config WHERE stream = 'sn';

-- Channel names: a stream's, a key's, and names over 63 bytes shortened by a stable hash.
SELECT tributary.fanout_channel('sn');
SELECT tributary.fanout_channel('sn', 'k1');
SELECT tributary.fanout_channel('sn', repeat('k', 60)) AS long_key,
       length(tributary.fanout_channel('sn', repeat('k', 60))) AS bytes;
-- the rule: the first 46 bytes, '#', the first 16 hex digits of the name's SHA-256
SELECT tributary.fanout_channel('sn', repeat('k', 60)) =
       left('tributary.sn.' || repeat('k', 60), 46) || '#' ||
       left(encode(sha256(convert_to('tributary.sn.' || repeat('k', 60), 'UTF8')), 'hex'), 16) AS rule_holds;
-- cut at a character boundary
SELECT octet_length(tributary.fanout_channel('sn', repeat('é', 40))) <= 63 AS fits;

-- A record is what to_jsonb(row) gives, for every kind of column: numbers (NaN and
-- Infinity stay strings), dates and times, json and jsonb, arrays, composites, domains,
-- enums, other built-in scalars, a dropped column, nulls.
CREATE TYPE sn_pair AS (a int, b text);
CREATE TYPE sn_mood AS ENUM ('calm', 'busy');
CREATE DOMAIN sn_pos AS numeric CHECK (VALUE > 0);
CREATE TABLE sn_kinds (id text, gone int, b bool, i2 smallint, i8 bigint, n numeric, f4 real,
                       f8 float8, d date, ts timestamp, tz timestamptz, j json, jb jsonb,
                       arr int[], pair sn_pair, pos sn_pos, mood sn_mood, by bytea,
                       iv interval, r int4range, u uuid, t varchar(8), nul text);
ALTER TABLE sn_kinds DROP COLUMN gone;
SELECT tributary.create_stream('sn_kinds', 'sn_kinds', 'local', '{"format": "json"}', key => 'id');
SELECT tributary.set_snapshot('sn_kinds');
SELECT * FROM tributary.ingest('sn_kinds', ARRAY[
    '{"id": "a", "b": true, "i2": -3, "i8": 9007199254740993, "n": 1.50, "f4": 0.1,
      "f8": 1.5e-7, "d": "2026-12-03", "ts": "2026-12-03 04:05:06.789", "tz": "2026-12-03 04:05:06+02",
      "j": {"z": 1, "a": [1, 2], "z": 2}, "jb": {"k": [true, null, 1.0]}, "arr": "{1,NULL,3}",
      "pair": "(7,seven)", "pos": 2.5, "mood": "busy", "by": "\\x00ff", "iv": "1 day 2 hours",
      "r": "[1,5)", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "t": "text"}',
    '{"id": "b", "n": "NaN", "f4": "-Infinity", "f8": "Infinity", "jb": "just text", "j": "3"}']::jsonb[]);
SELECT s.key, s.record = to_jsonb(k) AS same, s.record -> 'n' AS n, s.record -> 'f8' AS f8,
       s.record -> 'tz' AS tz, s.record -> 'pair' AS pair
FROM tributary.snapshot('sn_kinds') s JOIN sn_kinds k ON k.id = s.key ORDER BY s.key;
SELECT tributary.drop_stream('sn_kinds');
DROP TABLE sn_kinds;
DROP DOMAIN sn_pos;
DROP TYPE sn_pair, sn_mood;

-- A session remembers where it wrote each key and reads the key there first; a batch that
-- rolled back and rows moved by VACUUM FULL make it read through the index again.
CREATE TABLE sn_h (id text, v int);
SELECT tributary.create_stream('sn_h', 'sn_h', 'local', '{"format": "json"}', key => 'id');
SELECT tributary.set_snapshot('sn_h');
SELECT * FROM tributary.ingest('sn_h', ARRAY['{"id": "a", "v": 1}', '{"id": "b", "v": 1}']::jsonb[]);
BEGIN;
SELECT * FROM tributary.ingest('sn_h', ARRAY['{"id": "a", "v": 2}']::jsonb[]);
ROLLBACK;
SELECT * FROM tributary.ingest('sn_h', ARRAY['{"id": "a", "v": 3}']::jsonb[]);
SELECT key, seq, record ->> 'v' AS v FROM tributary.snapshot('sn_h') ORDER BY key;
VACUUM FULL tributary.snapshots;
SELECT * FROM tributary.ingest('sn_h', ARRAY['{"id": "b", "v": 4}', '{"id": "a", "v": 5}']::jsonb[]);
SELECT key, seq, record ->> 'v' AS v FROM tributary.snapshot('sn_h') ORDER BY key;
SELECT count(*) AS rows_kept FROM tributary.snapshots WHERE stream = 'sn_h';
SELECT tributary.drop_stream('sn_h');
DROP TABLE sn_h;

-- The snapshot stage reads whole only the rows that win, fetched by TID as they were stored:
-- in a partition of the same columns; from a copy kept as it landed in one of another column
-- order; with values moved out of line (TOAST); and not as an AFTER trigger changed them.
CREATE TABLE sn_p (id text, region text, v int, big text) PARTITION BY LIST (region);
CREATE TABLE sn_p_eu PARTITION OF sn_p FOR VALUES IN ('eu');
CREATE TABLE sn_p_us (big text, v int, gone int, region text, id text);
ALTER TABLE sn_p_us DROP COLUMN gone;
ALTER TABLE sn_p ATTACH PARTITION sn_p_us FOR VALUES IN ('us');
CREATE FUNCTION sn_after() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN UPDATE sn_p SET v = -1 WHERE id = NEW.id AND v = 99; RETURN NULL; END $$;
CREATE TRIGGER sn_after AFTER INSERT ON sn_p_eu FOR EACH ROW EXECUTE FUNCTION sn_after();
SELECT tributary.create_stream('sn_p', 'sn_p', 'local', '{"format": "json"}', key => 'id');
SELECT tributary.set_snapshot('sn_p');
SELECT * FROM tributary.ingest('sn_p', ARRAY[
    '{"id": "e1", "region": "eu", "v": 1}', '{"id": "u1", "region": "us", "v": 1}',
    '{"id": "e1", "region": "eu", "v": 2}', '{"id": "u1", "region": "us", "v": 2}',
    '{"id": "e2", "region": "eu", "v": 99}']::jsonb[]);
SELECT * FROM tributary.ingest('sn_p', ARRAY(
    SELECT json_build_object('id', r || '3', 'region', r, 'v', 3,
                             'big', (SELECT string_agg(md5(i::text || r), '') FROM generate_series(1, 400) i))::jsonb
    FROM unnest(ARRAY['eu', 'us']) r));
SELECT key, seq, record ->> 'region' AS region, record ->> 'v' AS v, length(record ->> 'big') AS big
FROM tributary.snapshot('sn_p') ORDER BY key;
-- the stored rows: e2's AFTER trigger changed it after it landed; the big values are out of
-- line, in each partition's TOAST table
SELECT id, v FROM sn_p ORDER BY id, v;
SELECT c.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) > 0 AS n FROM %s',
       c.reltoastrelid::regclass), false, true, '')))[1]::text AS toasted
FROM pg_class c WHERE c.relname IN ('sn_p_eu', 'sn_p_us') ORDER BY c.relname;
SELECT count(*) AS as_stored FROM tributary.snapshot('sn_p') s
JOIN sn_p p ON p.id = s.key AND p.v = (s.record ->> 'v')::int WHERE s.record = to_jsonb(p);
SELECT tributary.drop_stream('sn_p');
DROP TABLE sn_p;
DROP FUNCTION sn_after();

-- stream_stats shows the seq; dropping the snapshot drops its rows; dropping the stream too.
SELECT stream, snapshot_seq, notifications_skipped FROM tributary.stream_stats
WHERE stream IN ('sn', 'sn_ev', 'sn_nokey') ORDER BY stream;
SELECT tributary.drop_snapshot('sn');
SELECT count(*) FROM tributary.snapshots WHERE stream = 'sn';
SELECT tributary.drop_stream('sn_ev');
SELECT count(*) FROM tributary.snapshots WHERE stream = 'sn_ev';
SELECT count(*) FROM tributary.snapshot_config;

SELECT tributary.drop_stream('sn');
SELECT tributary.drop_stream('sn_nokey');
SELECT tributary.drop_stream('sn_noevent');
DROP TABLE sn_t, sn_nokey, sn_noevent, sn_ev;
DROP FUNCTION sn_upper();
DROP ROLE sn_reader, sn_other;
