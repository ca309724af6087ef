--
-- kafka_policy: which librdkafka properties a role may set (src/sources/kafka_policy.c),
-- what non-admins see of them, and the strict checks of the kafka options "start" and
-- "partitions" and of integer options. Kafka streams are created with enabled => false
-- (or started only inside a rolled-back transaction), so no worker runs and no broker is
-- needed. This file makes its own roles and drops them at its end.
--
-- regress_kpol_owner  owns kpol_t, nothing else (granted more rights for a while below)
-- regress_kpol_admin  member of tributary_admin, INSERT on kpol_t
--
CREATE ROLE regress_kpol_owner NOLOGIN;
CREATE ROLE regress_kpol_admin NOLOGIN IN ROLE tributary_admin;
CREATE TABLE kpol_t (id integer, v text);
ALTER TABLE kpol_t OWNER TO regress_kpol_owner;
GRANT INSERT ON kpol_t TO regress_kpol_admin;
SHOW tributary.max_partitions;

--
-- Properties that run commands or load code: superusers only, refused before librdkafka
-- sees them, in create_stream (enabled or not) and in alter_stream.
--
SET ROLE regress_kpol_owner;
-- the command of the issue (GSSAPI is refused first: Cyrus SASL would run kinit anyway)
SELECT tributary.create_stream('kpol_cmd', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "GSSAPI",
                     "sasl.kerberos.kinit.cmd": "id > /tmp/x"}}');
SELECT tributary.create_stream('kpol_cmd', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                     "sasl.kerberos.kinit.cmd": "id > /tmp/x"}}', enabled => false);
-- the default kinit.cmd puts the principal, unquoted, into a shell command
SELECT tributary.create_stream('kpol_cmd', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"sasl.kerberos.principal": "p; id > /tmp/x"}}', enabled => false);
-- a library path that does not exist: the policy's error, not librdkafka's "could not
-- load", so rd_kafka_conf_set (which dlopen's it) never ran
SELECT tributary.create_stream('kpol_lib', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"plugin.library.paths": "/nonexistent/tributary-evil.so"}}', enabled => false);
SELECT tributary.create_stream('kpol_lib', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"ssl.engine.location": "/nonexistent/engine.so"}}', enabled => false);
SELECT tributary.create_stream('kpol_lib', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"ssl.providers": "legacy"}}', enabled => false);

-- What a plain owner may set: a SASL/SSL login with inline PEMs, group and fetch tuning,
-- sockets, API versions.
SELECT tributary.create_stream('kpol_ok', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                     "sasl.username": "u", "sasl.password": "p",
                     "ssl.ca.pem": "-----BEGIN CERTIFICATE-----", "ssl.key.pem": "-----BEGIN PRIVATE KEY-----",
                     "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----", "ssl.key.password": "kp",
                     "ssl.endpoint.identification.algorithm": "none",
                     "session.timeout.ms": 30000, "heartbeat.interval.ms": 3000,
                     "max.poll.interval.ms": 600000, "partition.assignment.strategy": "cooperative-sticky",
                     "group.instance.id": "host1", "client.rack": "rack1", "client.id": "app",
                     "isolation.level": "read_uncommitted", "fetch.max.bytes": 1048576,
                     "fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 4096,
                     "socket.keepalive.enable": true, "reconnect.backoff.max.ms": 5000,
                     "api.version.request": true, "topic.metadata.refresh.interval.ms": 60000}}',
    enabled => false);
-- the owner sees what any role may set in clear, secrets masked
SELECT jsonb_pretty(options -> 'librdkafka') AS owner_sees FROM tributary.streams WHERE name = 'kpol_ok';
-- ... and alter_stream checks the new properties too, enabled or not
SELECT tributary.alter_stream('kpol_ok',
    '{"librdkafka": {"plugin.library.paths": "/nonexistent/tributary-evil.so"}}');
SELECT tributary.alter_stream('kpol_ok',
    '{"librdkafka": {"sasl.mechanism": "PLAIN", "sasl.kerberos.kinit.cmd": "id > /tmp/x"}}');
SELECT tributary.alter_stream('kpol_ok', '{"librdkafka": {"client.id": "app2"}, "batch_size": 10}');
RESET ROLE;
SELECT name, config_version, options -> 'librdkafka' AS librdkafka
FROM tributary.streams WHERE name = 'kpol_ok';

-- A superuser may set them (a command librdkafka accepts at configuration time; the
-- stream is never started).
SELECT tributary.create_stream('kpol_super', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "GSSAPI",
                     "sasl.kerberos.kinit.cmd": "kinit -k -t /nonexistent/keytab kafka"}}',
    enabled => false);
-- Given to a plain role, the stream keeps running as the superuser configured it, but
-- alter_stream checks the merged options: the new owner cannot store properties it may
-- not set, even ones a superuser set before.
SELECT tributary.alter_stream_owner('kpol_super', 'regress_kpol_owner');
SET ROLE regress_kpol_owner;
SELECT tributary.alter_stream('kpol_super', '{"batch_size": 5}');
RESET ROLE;

--
-- SASL: only the mechanisms librdkafka implements itself. Any other goes to Cyrus SASL,
-- which for GSSAPI (the default) runs kinit and uses the server's Kerberos identity.
--
SET ROLE regress_kpol_owner;
SELECT tributary.create_stream('kpol_sasl', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"security.protocol": "sasl_ssl"}}', enabled => false);
SELECT tributary.create_stream('kpol_sasl', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "gssapi"}}', enabled => false);
SELECT tributary.create_stream('kpol_sasl', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "DIGEST-MD5"}}', enabled => false);
-- libcurl reads file:// URLs: a token endpoint that is not http(s) reads server files
SELECT tributary.create_stream('kpol_sasl', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"sasl.oauthbearer.token.endpoint.url": "file:///etc/passwd"}}', enabled => false);
RESET ROLE;

--
-- Properties that read server files: superusers and members of pg_read_server_files.
--
SET ROLE regress_kpol_owner;
SELECT tributary.create_stream('kpol_files', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"ssl.ca.location": "/nonexistent/ca.pem"}}', enabled => false);
SELECT tributary.create_stream('kpol_files', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"ssl.keystore.location": "/nonexistent/ks.p12"}}', enabled => false);
SELECT tributary.create_stream('kpol_files', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"sasl.kerberos.keytab": "/nonexistent/keytab"}}', enabled => false);
RESET ROLE;
GRANT pg_read_server_files TO regress_kpol_owner;
SET ROLE regress_kpol_owner;
SELECT tributary.create_stream('kpol_files', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"ssl.ca.location": "/nonexistent/ca.pem", "ssl.crl.location": "/nonexistent/crl.pem",
                     "ssl.key.location": "/nonexistent/key.pem", "ssl.certificate.location": "/nonexistent/cert.pem",
                     "ssl.keystore.location": "/nonexistent/ks.p12", "sasl.kerberos.keytab": "/nonexistent/keytab"}}',
    enabled => false);
-- membership in pg_read_server_files is not enough for what runs code
SELECT tributary.alter_stream('kpol_files', '{"librdkafka": {"sasl.kerberos.kinit.cmd": "id"}}');
RESET ROLE;
REVOKE pg_read_server_files FROM regress_kpol_owner;

--
-- Logging and debugging (into the server log): superusers and tributary_admin members.
--
SET ROLE regress_kpol_owner;
SELECT tributary.create_stream('kpol_debug', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"debug": "all"}}', enabled => false);
SELECT tributary.create_stream('kpol_debug', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"log_level": 7}}', enabled => false);
SELECT tributary.alter_stream('kpol_ok', '{"librdkafka": {"log.connection.close": false}}');
RESET ROLE;
SET ROLE regress_kpol_admin;
SELECT tributary.create_stream('kpol_debug', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"debug": "consumer,cgrp", "log_level": 7}}', enabled => false);
-- an admin is not a superuser: no files, no code
SELECT tributary.alter_stream('kpol_debug', '{"librdkafka": {"ssl.ca.location": "/nonexistent/ca.pem"}}');
SELECT tributary.alter_stream('kpol_debug', '{"librdkafka": {"plugin.library.paths": "/nonexistent/tributary-evil.so"}}');
RESET ROLE;

--
-- Anything not on the list is for superusers. Properties tributary sets itself are refused
-- to everyone, also in librdkafka's "topic." spelling of topic properties.
--
SET ROLE regress_kpol_owner;
SELECT tributary.create_stream('kpol_other', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"no.such.property": "1"}}', enabled => false);
SELECT tributary.create_stream('kpol_other', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"internal.termination.signal": 10}}', enabled => false);
SELECT tributary.create_stream('kpol_other', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"topic.auto.offset.reset": "earliest"}}', enabled => false);
SELECT tributary.create_stream('kpol_other', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"group.id": "g"}}', enabled => false);
RESET ROLE;
SELECT tributary.create_stream('kpol_other', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"topic.enable.auto.commit": true}}', enabled => false);

--
-- start() validates the stored options in the caller's backend: for a role that is not a
-- superuser, librdkafka does not see the properties it may not set (they were checked when
-- stored). Shown with a value librdkafka refuses, stored behind tributary's back.
--
SELECT tributary.create_stream('kpol_skip', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "librdkafka": {"enable.random.seed": false}}', enabled => false);
UPDATE tributary.stream_catalog
SET options = jsonb_set(options, '{librdkafka,enable.random.seed}', '"maybe"')
WHERE name = 'kpol_skip';
BEGIN;
SET ROLE regress_kpol_admin;
SELECT tributary.start('kpol_skip');
ROLLBACK;
BEGIN;
SELECT tributary.start('kpol_skip');
ROLLBACK;

--
-- Masking: non-admins see in clear only what every role may set and holds no secret.
--
SELECT tributary.create_stream('kpol_mask', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t",
      "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "GSSAPI",
                     "sasl.kerberos.keytab": "/etc/krb5.keytab",
                     "sasl.kerberos.kinit.cmd": "kinit -k -t /etc/krb5.keytab kafka",
                     "sasl.kerberos.service.name": "kafka",
                     "ssl.keystore.location": "/etc/kafka/ks.p12", "ssl.keystore.password": "ksp",
                     "ssl.key.pem": "-----BEGIN PRIVATE KEY-----", "sasl.password": "s3cret",
                     "sasl.username": "svc", "linger.ms": 5, "enable.random.seed": false,
                     "debug": "cgrp", "client.rack": "rack1", "session.timeout.ms": 30000}}',
    enabled => false);
SELECT tributary.alter_stream_owner('kpol_mask', 'regress_kpol_owner');
SET ROLE regress_kpol_owner;
SELECT jsonb_pretty(options -> 'librdkafka') AS owner_sees FROM tributary.streams WHERE name = 'kpol_mask';
RESET ROLE;
SET ROLE regress_kpol_admin;
SELECT jsonb_pretty(options -> 'librdkafka') AS admin_sees FROM tributary.streams WHERE name = 'kpol_mask';
RESET ROLE;
-- the function itself: other keys untouched, a Redis URL's password masked, any JSON in
SELECT tributary._redact_options(
    '{"url": "redis://app:pw@cache:6379/0?db=1&password=again", "topic": "t",
      "librdkafka": {"client.id": "x", "sasl.password": {"nested": 1}, "fetch.min.bytes": 1}}');
SELECT tributary._redact_options('{"librdkafka": "not an object", "url": 5}');
SELECT tributary._redact_options('[1, 2]'), tributary._redact_options('"x"'),
       tributary._redact_options(NULL);

--
-- Strict kafka options: "start" keys are partition numbers in one spelling, below
-- tributary.max_partitions; "partitions" likewise; a "start" time must be finite and
-- fixed (not "now" or "today", which would be read anew at each worker start).
--
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"-0": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"99999999999999999999": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"007": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"+1": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {" 1": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": {"1024": 5}}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "infinity"}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "-infinity"}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "now"}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "Today 12:00"}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "start": "yesterday"}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": [0, 1024]}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": [-1]}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": [1.5]}', enabled => false);
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka', '{"brokers": "b:9092", "topic": "t", "partitions": ["1"]}', enabled => false);
-- the largest partition, offsets and partitions written with a zero fraction, a finite time
SELECT tributary.create_stream('kpol_opt', 'kpol_t', 'kafka',
    '{"brokers": "b:9092", "topic": "t", "start": {"0": 7.0, "1023": 9}, "partitions": [0, 1023.0]}', enabled => false);
SELECT tributary.alter_stream('kpol_opt', '{"start": "2024-05-01 12:00:00+00"}');
-- "1" and "1.0" are one partition
SELECT tributary.alter_stream('kpol_opt', '{"partitions": [1, 1.0]}');

--
-- Integers: a JSON number with an integral value in range, however it is written (jsonb
-- keeps 1e6 as 1000000 and 1000.0 as 1000.0).
--
SELECT tributary.create_stream('kpol_int', 'kpol_t', options => '{"batch_size": 1000.0, "batch_ms": 1e3}');
SELECT tributary.alter_stream('kpol_int', '{"batch_size": 1e6, "batch_ms": 250.000}');
SELECT options FROM tributary.streams WHERE name = 'kpol_int';
SELECT tributary.alter_stream('kpol_int', '{"batch_size": 1000.5}');
SELECT tributary.alter_stream('kpol_int', '{"batch_size": 1e-3}');
SELECT tributary.alter_stream('kpol_int', '{"batch_size": 1.0e7}');
SELECT tributary.alter_stream('kpol_int', '{"batch_size": -0.0}');
SELECT tributary.alter_stream('kpol_int', '{"batch_size": 99999999999999999999.0}');

-- Clean up.
SELECT tributary.drop_stream(name) FROM tributary.streams WHERE name LIKE 'kpol\_%' ORDER BY name;
DROP TABLE kpol_t;
DROP ROLE regress_kpol_owner, regress_kpol_admin;
