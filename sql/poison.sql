--
-- poison: one message whose error would stop any statement (a missing relation in a
-- regclass column, a trigger raising insufficient_privilege for one row) is that
-- message's fault: it becomes a dead letter and the others land. Only an error that
-- every message of a batch hits alike stops the batch.
--
CREATE TABLE poison_t (id integer PRIMARY KEY, r regclass);
SELECT tributary.create_stream('poison', 'poison_t');

-- a regclass naming no table (42P01), in the middle of a batch and alone
SELECT * FROM tributary.ingest('poison', ARRAY[
    '{"id": 1, "r": "pg_class"}', '{"id": 7, "r": "no_such_table"}', '{"id": 8, "r": "pg_proc"}']);
SELECT * FROM tributary.ingest('poison', '{"id": 9, "r": "no_such_table_either"}');
SELECT id, r FROM poison_t ORDER BY id;
SELECT payload_text(payload) AS payload, sqlstate, error FROM tributary.dead_letters
WHERE stream = 'poison' ORDER BY id;

-- a trigger that refuses one row with 42501
CREATE FUNCTION poison_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 17 THEN
        RAISE EXCEPTION 'row % is not allowed', NEW.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison_refuse BEFORE INSERT ON poison_t FOR EACH ROW EXECUTE FUNCTION poison_refuse();
SELECT * FROM tributary.ingest('poison', ARRAY['{"id": 16}', '{"id": 17}', '{"id": 18}']);
SELECT id FROM poison_t WHERE id >= 16 ORDER BY id;
SELECT payload_text(payload) AS payload, sqlstate, error FROM tributary.dead_letters
WHERE stream = 'poison' AND sqlstate = '42501';

-- the same error from every message is not one message's fault: the call fails, and
-- nothing of it is stored
CREATE OR REPLACE FUNCTION poison_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inserts are switched off' USING ERRCODE = 'insufficient_privilege';
END $$;
SELECT * FROM tributary.ingest('poison', ARRAY['{"id": 20}', '{"id": 21}', '{"id": 22}']);
SELECT count(*) AS rows_20_22 FROM poison_t WHERE id >= 20;
SELECT count(*) AS dead_letters FROM tributary.dead_letters WHERE stream = 'poison';
-- ... while an error every message hits that is a row's kind of error (a constraint)
-- dead-letters them all
DROP TRIGGER poison_refuse ON poison_t;
ALTER TABLE poison_t ADD CONSTRAINT poison_small CHECK (id < 100);
SELECT * FROM tributary.ingest('poison', ARRAY['{"id": 120}', '{"id": 121}']);
-- one message alone is always its own fault, whatever the error
CREATE TRIGGER poison_refuse BEFORE INSERT ON poison_t FOR EACH ROW EXECUTE FUNCTION poison_refuse();
SELECT * FROM tributary.ingest('poison', '{"id": 30}');
SELECT sqlstate, count(*) FROM tributary.dead_letters WHERE stream = 'poison' GROUP BY sqlstate ORDER BY sqlstate;

SELECT tributary.drop_stream('poison');
DROP TABLE poison_t;
DROP FUNCTION poison_refuse();
