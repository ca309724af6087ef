--
-- insert: the target-table features the insert loop (ingest.c, derived from COPY's)
-- keeps, beyond those sql/ingest.sql shows: statement triggers and transition tables,
-- partitions whose columns differ from the parent's and that have their own triggers,
-- volatile defaults (rows then go one at a time, so each sees the ones before it),
-- identity BY DEFAULT, dropped columns, and a message that supplies no column at all.
--
SET TimeZone = 'UTC';

CREATE FUNCTION ins_dead(s text)
RETURNS TABLE (payload text, error text, sqlstate text)
LANGUAGE sql AS $$
    SELECT convert_from(d.payload, 'UTF8'), d.error, d.sqlstate
    FROM tributary.dead_letters d WHERE d.stream = s ORDER BY d.id
$$;

--
-- Statement triggers: BEFORE and AFTER fire once per call that lands rows, and the AFTER
-- trigger's transition table holds exactly the rows that landed.
--
CREATE TABLE ins_stmt (id integer PRIMARY KEY, v text);
CREATE TABLE ins_stmt_log (kind text, n bigint, ids text);
CREATE FUNCTION ins_stmt_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ins_stmt_log VALUES ('before', NULL, NULL);
    RETURN NULL;
END $$;
CREATE FUNCTION ins_stmt_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ins_stmt_log
        SELECT 'after', count(*), string_agg(id::text, ',' ORDER BY id) FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER ins_stmt_before BEFORE INSERT ON ins_stmt
    FOR EACH STATEMENT EXECUTE FUNCTION ins_stmt_before();
CREATE TRIGGER ins_stmt_after AFTER INSERT ON ins_stmt REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ins_stmt_after();
SELECT tributary.create_stream('ins_stmt', 'ins_stmt');
SELECT * FROM tributary.ingest('ins_stmt', ARRAY[
    '{"id": 1, "v": "a"}', '{"id": 2, "v": "b"}', '{"id": 3, "v": "c"}']);
SELECT * FROM ins_stmt_log;
TRUNCATE ins_stmt_log;
-- with a duplicate in the batch, the rolled-back attempt leaves no trace: the logged
-- statements are those that committed, and together they hold every landed row once
SELECT * FROM tributary.ingest('ins_stmt', ARRAY[
    '{"id": 4, "v": "d"}', '{"id": 4, "v": "dup"}', '{"id": 5, "v": "e"}']);
SELECT kind, count(*) AS statements, sum(n) AS rows FROM ins_stmt_log GROUP BY kind ORDER BY kind;
SELECT string_agg(ids, ',' ORDER BY ids) AS landed FROM ins_stmt_log WHERE kind = 'after' AND n > 0;
SELECT * FROM ins_stmt ORDER BY id;
SELECT * FROM ins_dead('ins_stmt');

--
-- Partitions: one made apart with its columns in another order and a dropped column,
-- one with a BEFORE ROW trigger (its rows are not buffered), a sub-partitioned one, and
-- a default partition.
--
CREATE TABLE ins_part (id integer, region text, amount numeric, note text DEFAULT 'none')
    PARTITION BY LIST (region);
CREATE TABLE ins_part_eu (junk integer, note text DEFAULT 'eu default', amount numeric,
                          region text, id integer);
ALTER TABLE ins_part_eu DROP COLUMN junk;
ALTER TABLE ins_part ATTACH PARTITION ins_part_eu FOR VALUES IN ('eu');
CREATE TABLE ins_part_us PARTITION OF ins_part FOR VALUES IN ('us');
CREATE FUNCTION ins_part_us_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.note := 'us trigger saw ' || (SELECT count(*) FROM ins_part_us);
    RETURN NEW;
END $$;
CREATE TRIGGER ins_part_us_before BEFORE INSERT ON ins_part_us
    FOR EACH ROW EXECUTE FUNCTION ins_part_us_before();
CREATE TABLE ins_part_ap PARTITION OF ins_part FOR VALUES IN ('ap') PARTITION BY RANGE (id);
CREATE TABLE ins_part_ap_low PARTITION OF ins_part_ap FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE ins_part_ap_high PARTITION OF ins_part_ap FOR VALUES FROM (100) TO (MAXVALUE);
CREATE TABLE ins_part_other PARTITION OF ins_part DEFAULT;
SELECT tributary.create_stream('ins_part', 'ins_part');
SELECT * FROM tributary.ingest('ins_part', ARRAY[
    '{"id": 1, "region": "eu", "amount": 1.5}',
    '{"id": 2, "region": "us", "amount": 2}',
    '{"id": 3, "region": "ap", "amount": 3}',
    '{"id": 300, "region": "ap", "amount": 4, "note": "given"}',
    '{"id": 5, "region": "eu", "amount": "five"}',
    '{"id": 6, "region": "us", "amount": 6}',
    '{"id": 7, "region": "mars", "amount": 7}',
    '{"id": 8, "region": "eu", "amount": 8, "note": null}'
]);
-- the parent's default applies (as for INSERT into the parent), not the partition's
SELECT tableoid::regclass AS partition, id, region, amount, note FROM ins_part ORDER BY id;
SELECT * FROM ins_dead('ins_part');

--
-- A volatile default that reads the table: rows go one at a time (no buffering), so
-- each row's default sees the rows before it, as a multi-row INSERT's would.
--
CREATE TABLE ins_rank (id integer, seen bigint);
CREATE FUNCTION ins_rank_count() RETURNS bigint LANGUAGE sql VOLATILE AS
    'SELECT count(*) FROM ins_rank';
ALTER TABLE ins_rank ALTER COLUMN seen SET DEFAULT ins_rank_count();
SELECT tributary.create_stream('ins_rank', 'ins_rank');
SELECT * FROM tributary.ingest('ins_rank', ARRAY['{"id": 1}', '{"id": 2}', '{"id": 3, "seen": 42}', '{"id": 4}']);
SELECT * FROM ins_rank ORDER BY id;

--
-- Identity BY DEFAULT (a message may give the value), a serial, a dropped column in the
-- middle of the table, and messages that supply no column at all.
--
CREATE TABLE ins_ident (id bigint GENERATED BY DEFAULT AS IDENTITY, gone text, n serial,
                        v text DEFAULT 'dflt');
ALTER TABLE ins_ident DROP COLUMN gone;
SELECT tributary.create_stream('ins_ident', 'ins_ident');
SELECT * FROM tributary.ingest('ins_ident', ARRAY[
    '{"v": "a"}', '{"id": 100, "v": "b"}', '{}', '{"gone": "ignored", "n": 50}']);
SELECT * FROM ins_ident ORDER BY n;

-- csv (a fixed column set): the other columns get their defaults, generated ones are computed.
CREATE TABLE ins_csv (id bigint GENERATED BY DEFAULT AS IDENTITY, a integer, b text DEFAULT 'b?',
                      total integer GENERATED ALWAYS AS (a * 2) STORED);
SELECT tributary.create_stream('ins_csv', 'ins_csv', 'local', '{"format": "csv", "columns": ["a"]}');
SELECT * FROM tributary.ingest('ins_csv', ARRAY['1', '2', '', 'x']);
SELECT * FROM ins_csv ORDER BY id;
SELECT * FROM ins_dead('ins_csv');

SELECT tributary.drop_stream(s) FROM unnest(ARRAY['ins_stmt', 'ins_part', 'ins_rank', 'ins_ident', 'ins_csv']) s;
