# Security and fault hardening of broker streams, tried as an attacker and a careless user
# would (issue 8): a table owner cannot redirect a superuser's stream and its credentials;
# a table owner's trigger runs as the table owner, restricted, never as the stream's owner;
# one poison message is dead-lettered while the stream moves on; row-level security added
# after the stream was created, a dropped target and a dropped owner role stop the stream
# as "failed" (no restart loop) until it is fixed; one role cannot take every worker slot;
# Kafka headers and keys that are not valid text leave dead letters that dump and restore.
use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(
	brokers => 1,
	topics => { creds => 1, trig => 1, poison => 1, rls => 1, gone => 1, orphan => 1, dump => 1, fair => 1 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('security', conf => 'log_min_messages = info');

sql($node, q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	CREATE ROLE writers;
	CREATE ROLE carol LOGIN IN ROLE writers;
});

# ---------------------------------------------------------------------------------------
# Finding 3: a superuser's stream with SASL credentials into alice's table. alice may not
# point it at a listener of hers: the credentials never leave for it.

my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 5, ReuseAddr => 1)
  or die "cannot listen: $!";
my $port = $listener->sockport;
my $password = 'Pw-' . int(rand(1e9)) . '-never-sent';
sql($node, qq{
	SET log_statement = 'none';
	CREATE TABLE creds_t (id bigint PRIMARY KEY);
	ALTER TABLE creds_t OWNER TO alice;
	SELECT tributary.create_stream('creds', 'creds_t', 'kafka',
		'{"brokers": "$bs", "topic": "creds",
		  "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
		                 "sasl.username": "app", "sasl.password": "$password"}}');
});
my $err = sql_fails($node, qq{SET ROLE alice; SELECT tributary.alter_stream('creds', '{"brokers": "127.0.0.1:$port"}')});
like($err, qr/permission denied to alter stream "creds"/, 'the table owner cannot alter a superuser\'s stream');
is(sql($node, q{SELECT options ->> 'brokers' FROM tributary.stream_catalog WHERE name = 'creds'}), $bs,
	'the stream still points at its broker');
like(sql_fails($node, q{SET ROLE alice; SELECT tributary.start('creds')}) || '', qr/permission denied to start/,
	'nor start it');
is(sql($node, q{SET ROLE alice; SELECT options IS NULL AND last_error IS NULL FROM tributary.streams WHERE name = 'creds'}),
	't', 'nor read its options or errors');

# Whatever connects to the listener in 5 s, and what it sends.
my $received = '';
my $connections = 0;
my $sel = IO::Select->new($listener);
my $until = time + 5;
while (time < $until)
{
	for my $fh ($sel->can_read(0.2))
	{
		if ($fh == $listener)
		{
			$sel->add($listener->accept);
			$connections++;
			next;
		}
		my $n = sysread($fh, my $buf, 65536);
		if (!$n) { $sel->remove($fh); close $fh; next; }
		$received .= $buf;
	}
}
is($connections, 0, 'no client connected to the table owner\'s listener');
unlike($received, qr/\Q$password\E/, 'the password never reached it');
close $listener;
# the owner (a superuser) stops it; its table's owner may stop it too
sql($node, q{SELECT tributary.stop('creds')});

# ---------------------------------------------------------------------------------------
# Finding 4: a superuser's stream into alice's table, whose trigger tries to make alice a
# superuser and records who it runs as.

sql($node, q{
	CREATE TABLE trig_t (id bigint PRIMARY KEY, who text, restricted boolean);
	CREATE FUNCTION trig_escalate() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		BEGIN
			EXECUTE 'ALTER ROLE alice SUPERUSER';
		EXCEPTION WHEN others THEN
			NULL;
		END;
		NEW.who := current_user;
		-- a security-restricted operation refuses SET ROLE
		BEGIN
			EXECUTE 'SET LOCAL ROLE alice';
			NEW.restricted := false;
		EXCEPTION WHEN others THEN
			NEW.restricted := true;
		END;
		RETURN NEW;
	END $$;
	CREATE TRIGGER trig_escalate BEFORE INSERT ON trig_t FOR EACH ROW EXECUTE FUNCTION trig_escalate();
	ALTER TABLE trig_t OWNER TO alice;
	ALTER FUNCTION trig_escalate() OWNER TO alice;
});
sql($node, qq{SELECT tributary.create_stream('trig', 'trig_t', 'kafka', '{"brokers": "$bs", "topic": "trig"}')});
kcat_produce($bs, 'trig', [ map { qq({"id": $_}) } 1 .. 5 ]);
ok(wait_for($node, 'SELECT count(*) FROM trig_t', '5', 60), 'the rows landed');
is(sql($node, q{SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'}), 'f', 'alice is not a superuser');
is(sql($node, q{SELECT string_agg(DISTINCT who || ' ' || restricted, ',') FROM trig_t}), 'alice true',
	'the trigger ran as the table owner, in a security-restricted operation');

# ---------------------------------------------------------------------------------------
# Finding 6: one poison message (a regclass naming no table, 42P01) in a Kafka batch.

sql($node, q{
	CREATE TABLE poison_t (id bigint PRIMARY KEY, r regclass);
	GRANT INSERT ON poison_t TO alice;
});
sql($node, qq{SET ROLE alice; SELECT tributary.create_stream('poison', 'poison_t', 'kafka',
	'{"brokers": "$bs", "topic": "poison", "batch_ms": 500}')});
kcat_produce($bs, 'poison', [ '{"id": 1, "r": "pg_class"}', '{"id": 2, "r": "no_such_table"}', '{"id": 3, "r": "pg_proc"}' ]);
ok(wait_for($node, q{SELECT next_offset FROM tributary.kafka_offsets WHERE stream = 'poison'}, '3', 60),
	'poison: the offset moved past the poison message');
is(sql($node, q{SELECT string_agg(id::text, ',' ORDER BY id) FROM poison_t}), '1,3', 'poison: the others landed');
is(sql($node, q{SELECT source_position || ' ' || sqlstate FROM tributary.dead_letters WHERE stream = 'poison'}),
	'1 42P01', 'poison: it is a dead letter with its position and SQLSTATE');
kcat_produce($bs, 'poison', [ '{"id": 4, "r": "pg_type"}' ]);
ok(wait_for($node, 'SELECT count(*) FROM poison_t', '3', 60), 'poison: later messages flow');

# ---------------------------------------------------------------------------------------
# Finding 7: row-level security enabled on the target after create_stream.

sql($node, q{
	CREATE TABLE rls_t (id bigint PRIMARY KEY);
	ALTER TABLE rls_t OWNER TO alice;
});
sql($node, qq{SET ROLE alice; SELECT tributary.create_stream('rls', 'rls_t', 'kafka', '{"brokers": "$bs", "topic": "rls"}')});
kcat_produce($bs, 'rls', [ '{"id": 1}', '{"id": 2}' ]);
ok(wait_for($node, 'SELECT count(*) FROM rls_t', '2', 60), 'rls: rows land before RLS');
sql($node, q{ALTER TABLE rls_t ENABLE ROW LEVEL SECURITY; ALTER TABLE rls_t FORCE ROW LEVEL SECURITY;});
kcat_produce($bs, 'rls', [ '{"id": 3}', '{"id": 4}' ]);
ok( wait_for(
		$node, q{SELECT state || ': ' || last_error FROM tributary.streams WHERE name = 'rls'},
		'failed: table "rls_t" has row-level security enabled for the stream\'s rows', 60),
	'rls: the stream fails with a clear error');
sleep 3;    # not a wait: 3 s in which no worker may restart and no row may land
is(sql($node, 'SELECT count(*) FROM rls_t'), '2', 'rls: no row bypassed the policy');
ok(!defined worker_pid($node, 'rls'), 'rls: no worker restarts while it is failed');
sql($node, q{ALTER TABLE rls_t NO FORCE ROW LEVEL SECURITY; ALTER TABLE rls_t DISABLE ROW LEVEL SECURITY;});
sql($node, q{SET ROLE alice; SELECT tributary.start('rls')});
ok(wait_for($node, 'SELECT count(*) FROM rls_t', '4', 60), 'rls: after start, the held messages land');

# ---------------------------------------------------------------------------------------
# Finding 9: the target dropped under a running stream.

sql($node, q{
	CREATE TABLE gone_t (id bigint PRIMARY KEY);
	ALTER TABLE gone_t OWNER TO alice;
});
sql($node, qq{SET ROLE alice; SELECT tributary.create_stream('gone', 'gone_t', 'kafka', '{"brokers": "$bs", "topic": "gone"}')});
kcat_produce($bs, 'gone', [ '{"id": 1}', 'not json' ]);
ok(wait_for($node, 'SELECT count(*) FROM gone_t', '1', 60), 'gone: a row landed');
sql($node, q{DROP TABLE gone_t});
kcat_produce($bs, 'gone', [ '{"id": 2}' ]);
ok( wait_for(
		$node, q{SELECT state = 'failed' AND last_error ~ '^target table with OID \d+ does not exist$'
		         FROM tributary.streams WHERE name = 'gone'}, 't', 60),
	'gone: failed with a clear error');
is(sql($node, q{SET ROLE alice; SELECT last_error IS NOT NULL FROM tributary.streams WHERE name = 'gone'}), 't',
	'gone: its owner reads why');
sleep 3;    # not a wait: 3 s in which no worker may restart
ok(!defined worker_pid($node, 'gone'), 'gone: no worker restarts');
is(sql($node, q{SET ROLE alice; SELECT count(*) FROM tributary.dead_letters WHERE stream = 'gone'}), '1',
	'gone: its owner reads its dead letters');
sql($node, q{SET ROLE alice; SELECT tributary.drop_stream('gone')});
is(sql($node, q{SELECT count(*) FROM tributary.stream_catalog WHERE name = 'gone'}), '0', 'gone: its owner dropped it');

# ---------------------------------------------------------------------------------------
# Finding 10: the owner role dropped from another database, where tributary cannot refuse.

sql($node, q{
	CREATE TABLE orphan_t (id bigint PRIMARY KEY);
	GRANT INSERT ON orphan_t TO writers;
	GRANT INSERT ON orphan_t TO alice;
});
sql($node, qq{SET ROLE carol; SELECT tributary.create_stream('orphan', 'orphan_t', 'kafka', '{"brokers": "$bs", "topic": "orphan"}')});
kcat_produce($bs, 'orphan', [ '{"id": 1}' ]);
ok(wait_for($node, 'SELECT count(*) FROM orphan_t', '1', 60), 'orphan: a row landed');
like(sql_fails($node, 'DROP ROLE carol') || '', qr/cannot be dropped because it owns tributary streams/,
	'orphan: DROP ROLE is refused in the stream\'s database');
$node->safe_psql('template1', 'DROP ROLE carol');
kcat_produce($bs, 'orphan', [ '{"id": 2}' ]);
ok( wait_for(
		$node, q{SELECT state = 'failed' AND last_error ~ 'owner of stream "orphan" \(role \d+\) no longer exists'
		         FROM tributary.streams WHERE name = 'orphan'}, 't', 60),
	'orphan: failed with a clear error');
is(sql($node, 'SELECT count(*) FROM orphan_t'), '1', 'orphan: nothing inserted without an owner');
sql($node, q{SELECT tributary.alter_stream_owner('orphan', 'alice')});
ok(wait_for($node, 'SELECT count(*) FROM orphan_t', '2', 60), 'orphan: a new owner, and it runs again');
is(sql($node, q{SELECT state || ' ' || owner FROM tributary.streams WHERE name = 'orphan'}), 'running alice',
	'orphan: running, owned by alice');

# ---------------------------------------------------------------------------------------
# Finding 5: a header name and value and a key that are not valid UTF-8, on a message that
# is dead-lettered; the database dumps and restores with its dead letters intact.

sql($node, q{CREATE TABLE dump_t (id bigint PRIMARY KEY, h jsonb)});
sql($node, qq{SELECT tributary.create_stream('dump', 'dump_t', 'kafka', '{"brokers": "$bs", "topic": "dump",
	"metadata": {"headers": "h"}}')});
kcat_produce($bs, 'dump', [ [ "k\xff\xfe", 'not json' ], [ "ok", '{"id": 1}' ] ],
	keys => 1, headers => [ "n\xff\xfeme" => "v\xc3\x28", 'plain' => '\\xdeadbeef', 'good' => 'text' ]);
ok(wait_for($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'dump'}, '1', 60),
	'dump: the bad message is a dead letter');
ok(wait_for($node, 'SELECT count(*) FROM dump_t', '1', 60), 'dump: the good one landed');
my $bx = '\\\\x';	# \\x: a backslash as jsonb's text shows it, then x
is( sql($node, q{SELECT headers::text FROM tributary.dead_letters WHERE stream = 'dump'}),
	qq({"good": "text", "plain": "${bx}5c786465616462656566", "${bx}6efffe6d65": "${bx}76c328"}),
	'dump: undecodable bytes (and text that begins with \x) are stored as \x and hex');
is(sql($node, q{SELECT h = (SELECT headers FROM tributary.dead_letters WHERE stream = 'dump') FROM dump_t}), 't',
	'dump: the headers column of the target holds the same');
is(sql($node, q{SELECT encode(message_key, 'hex') FROM tributary.dead_letters WHERE stream = 'dump'}), '6bfffe',
	'dump: the key is kept byte for byte');

my $dumpfile = $node->basedir . '/security.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $dumpfile ], 'pg_dump succeeds');
sql($node, 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dumpfile ],
	'pg_restore succeeds');
my $facts = q{SELECT string_agg(concat_ws(' ', stream, source_stream, source_partition, source_position, encode(payload, 'hex'),
	encode(message_key, 'hex'), headers::text, sqlstate), E'\n' ORDER BY id) FROM tributary.dead_letters};
is($node->safe_psql('restored', $facts), sql($node, $facts), 'the restored dead letters are the same');
my $offsets = q{SELECT string_agg(concat_ws(' ', stream, source_stream, source_partition, position), ','
	ORDER BY stream, source_stream, source_partition) FROM tributary.offsets};
is($node->safe_psql('restored', $offsets), sql($node, $offsets), 'the restored offsets are the same');
is($node->safe_psql('restored', q{SELECT string_agg(name || ' ' || owner, ',' ORDER BY name) FROM tributary.stream_catalog}),
	sql($node, q{SELECT string_agg(name || ' ' || owner, ',' ORDER BY name) FROM tributary.stream_catalog}),
	'the restored streams are the same');

$node->stop;

# ---------------------------------------------------------------------------------------
# Finding 11: one role cannot take every worker slot. tributary.max_workers = 4 gives a
# role 2 workers by default; a superuser's stream is exempt and starts first.

my $fair = tributary_node('fair', conf => "tributary.max_workers = 4\nlog_min_messages = info");
$fair->safe_psql('postgres', q{
	CREATE ROLE bob;
	CREATE TABLE fair_t (id bigint);
	GRANT INSERT ON fair_t TO bob;
});
for my $i (1 .. 3)
{
	$fair->safe_psql('postgres',
		qq{SET ROLE bob; SELECT tributary.create_stream('bob$i', 'fair_t', 'kafka', '{"brokers": "$bs", "topic": "fair"}')});
}
ok( wait_for(
		$fair, q{SELECT string_agg(state, ',' ORDER BY name) FROM tributary.streams}, 'running,running,waiting', 60),
	'fair: bob\'s third stream waits');
like(
	$fair->safe_psql('postgres', q{SELECT last_error FROM tributary.streams WHERE name = 'bob3'}),
	qr/^waiting for a worker: the streams of role bob run 2 workers, tributary.max_workers_per_role is 2$/,
	'fair: last_error says why');
$fair->safe_psql('postgres',
	qq{SELECT tributary.create_stream('admin1', 'fair_t', 'kafka', '{"brokers": "$bs", "topic": "fair"}')});
ok(wait_for($fair, q{SELECT state FROM tributary.streams WHERE name = 'admin1'}, 'running', 60),
	'fair: a superuser\'s stream still gets a worker');
$fair->safe_psql('postgres', q{SELECT tributary.drop_stream('bob1')});
ok( wait_for(
		$fair, q{SELECT state || ' ' || coalesce(last_error, '-') FROM tributary.streams WHERE name = 'bob3'},
		'running -', 60),
	'fair: the waiting stream runs once a slot of its role is free');
$fair->stop;

$kafka->stop;
done_testing();
