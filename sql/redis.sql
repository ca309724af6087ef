--
-- redis: what create_stream and alter_stream accept and refuse for a Redis Streams
-- stream. Streams are created disabled: no worker, no server; what the worker does with a
-- real redis-server is tested in test/integration/18*_redis*.pl.
--
CREATE TABLE redis_t (id bigint, body text, attrs jsonb, k text, eid text, at timestamptz, n integer);

-- the smallest stream: a server and a key; format json takes each entry's pairs as an object
SELECT tributary.create_stream('redis_min', 'redis_t', 'redis',
    '{"url": "redis://127.0.0.1:6379", "stream": "orders"}', enabled => false);
-- every option
SELECT tributary.create_stream('redis_all', 'redis_t', 'redis',
    '{"url": "redis://app:s3cret@cache.example:6380/2", "stream": ["a", "b", "c"],
      "group": "g", "consumer": "c", "start": "1700000000000-5", "fields": {"attrs": "json", "*": "text"},
      "parallelism": 2, "batch_size": 500, "batch_ms": 20,
      "metadata": {"stream": "k", "id": "eid", "timestamp": "at"}}', enabled => false);
-- the URL's other forms: unix socket (with a password and db), IPv6, ?db= and ?password=
SELECT tributary.create_stream('redis_unix', 'redis_t', 'redis',
    '{"url": "unix://:pw@/var/run/redis/redis.sock?db=3", "stream": "k"}', enabled => false);
SELECT tributary.create_stream('redis_v6', 'redis_t', 'redis',
    '{"url": "redis://[::1]:6379?db=1&password=x%40y", "stream": "k", "start": "$"}', enabled => false);
-- one field as the payload, for any format
SELECT tributary.create_stream('redis_text', 'redis_t', 'redis',
    '{"url": "redis://h", "stream": "k", "format": "text", "column": "body", "fields": "line"}', enabled => false);
SELECT tributary.create_stream('redis_csv', 'redis_t', 'redis',
    '{"url": "redis://h", "stream": "k", "format": "csv", "columns": ["id", "body"], "fields": "row"}', enabled => false);
SELECT name, source, format, state FROM tributary.streams WHERE name LIKE 'redis\_%' ORDER BY name;

-- refused: TLS, which Debian's hiredis is built without
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "rediss://h:6379", "stream": "k"}');
-- refused: what is not a Redis URL
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "http://h", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h:0", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h:99999", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h/x", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://pw@h", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://:p%zz@h", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h?timeout=5", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "unix://relative.sock", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://", "stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": 6379, "stream": "k"}');
-- refused: missing or malformed url and stream
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"stream": "k"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": ""}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": ["a", "a"]}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": []}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "group": ""}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "consumer": 1}');
-- refused: a start that is no entry id
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "start": "latest"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "start": "1-2-3"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "start": "99999999999999999999-0"}');
-- refused: fields that cannot make a payload
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis',
    '{"url": "redis://h", "stream": "k", "format": "text", "column": "body"}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis',
    '{"url": "redis://h", "stream": "k", "format": "csv", "columns": ["id"], "fields": {"a": "json"}}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "fields": {"a": "xml"}}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "fields": ["a"]}');
-- refused: Kafka's metadata on a Redis stream, Redis's on Kafka and local streams
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "metadata": {"offset": "n"}}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "metadata": {"id": "eid"}}');
SELECT tributary.create_stream('redis_bad', 'redis_t', 'local', '{"metadata": {"topic": "k"}}');
-- refused: Kafka's options
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "redis://h", "stream": "k", "topic": "t"}');
SELECT count(*) AS refused_left_nothing FROM tributary.stream_catalog WHERE name = 'redis_bad';

-- alter_stream checks the same way, and a good change is stored
SELECT tributary.alter_stream('redis_min', '{"url": "rediss://h", "stream": "orders"}');
SELECT tributary.alter_stream('redis_min', '{"url": "redis://127.0.0.1:6379", "stream": ["orders", "returns"], "start": "$"}');
SELECT options FROM tributary.streams WHERE name = 'redis_min';

-- the password in the URL is masked for a role that may manage the stream but is no admin
CREATE ROLE regress_redis_owner;
ALTER TABLE redis_t OWNER TO regress_redis_owner;
SELECT tributary.alter_stream_owner('redis_all', 'regress_redis_owner');
SELECT tributary.alter_stream_owner('redis_unix', 'regress_redis_owner');
SET ROLE regress_redis_owner;
SELECT name, options ->> 'url' AS url FROM tributary.streams WHERE name IN ('redis_all', 'redis_unix', 'redis_v6') ORDER BY name;
-- a unix socket is opened as the server's OS user: only admins may name one
SELECT tributary.create_stream('redis_bad', 'redis_t', 'redis', '{"url": "unix:///var/run/postgresql/.s.PGSQL.5432", "stream": "k"}');
SELECT tributary.alter_stream('redis_all', '{"url": "unix:///tmp/redis.sock", "stream": "k"}');
RESET ROLE;
-- passwords that hold '@' or '/', and a user without a password, are masked whole
SELECT u AS stored, tributary._redact_options(jsonb_build_object('url', u)) ->> 'url' AS shown
FROM (VALUES ('redis://u:p@ss@h:1'), ('unix://u:a/b@/tmp/x.sock'), ('redis://secret@h'),
             ('redis://h:6379?password=a&db=2'), ('unix:///tmp/no@secret.sock')) AS v(u);
SELECT name, options ->> 'url' AS url FROM tributary.streams WHERE name IN ('redis_all', 'redis_unix') ORDER BY name;

SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'redis\_%' ORDER BY name;
DROP TABLE redis_t;
DROP ROLE regress_redis_owner;
