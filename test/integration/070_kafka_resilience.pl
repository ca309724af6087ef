# Kafka troubles that are reported, not crash loops: a topic that does not exist yet, a
# topic that disappears while consumed (both made by the local broker's topic-error
# control), a stored offset out of range, an authentication failure (the local broker has
# no SASL, so a client set up for SASL fails its handshake as against a broker that refuses
# its credentials), and a target too slow to keep up. In each case the worker keeps
# running, with the error in tributary.streams.last_error; it resumes by itself (or after
# alter_stream) without losing or repeating a message, and a password never reaches the
# server log. A slow target means backpressure: the worker buffers what its settings allow,
# not the topic.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { gone => 2, slow => 4 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('resilience', conf => 'log_min_messages = info');

# The worker keeps its pid for a while: no exit, no restart by the launcher.
sub stays_up
{
	my ($stream, $what) = @_;
	my $pid = worker_pid($node, $stream);
	ok(defined $pid, "$what: the worker runs");
	sleep 3;
	is(worker_pid($node, $stream), $pid, "$what: the same worker runs 3 s later");
	is(sql($node, qq{SELECT state FROM tributary.streams WHERE name = '$stream'}), 'running',
		"$what: the stream is running");
}

my $log_offset = -s $node->logfile;

# ---------------------------------------------------------------------------------------
# A topic that does not exist yet. (The metadata refresh is lowered from tributary's 30 s
# so the test does not wait that long for the topic to appear.)

ok($kafka->control('topic-error ghost UNKNOWN_TOPIC_OR_PART'), 'topic ghost does not exist');
sql($node, qq{
	CREATE TABLE ghost_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('ghost', 'ghost_rows', 'kafka',
		'{"brokers": "$bs", "topic": "ghost",
		  "librdkafka": {"topic.metadata.refresh.interval.ms": 1000}}');
});
ok( wait_for(
		$node, q{SELECT last_error FROM tributary.streams WHERE name = 'ghost'},
		'UNKNOWN_TOPIC_OR_PART: Subscribed topic not available: ghost: Broker: Unknown topic or partition',
		60),
	'missing topic: reported in last_error');
stays_up('ghost', 'missing topic');

ok($kafka->control('topic-error ghost NO_ERROR'), 'topic ghost appears');
kcat_produce_ids($bs, 'ghost', 1, 100);
check_ids($node, 'ghost_rows', 'ghost', [ 1 .. 100 ], 'missing topic, then created');
ok(wait_for($node, q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'ghost'}),
	'missing topic: last_error is cleared once batches commit');

# ---------------------------------------------------------------------------------------
# A topic that disappears while consumed, and comes back.

sql($node, qq{
	CREATE TABLE gone_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('gone', 'gone_rows', 'kafka',
		'{"brokers": "$bs", "topic": "gone",
		  "librdkafka": {"topic.metadata.refresh.interval.ms": 1000}}');
});
kcat_produce_ids($bs, 'gone', 1, 100);
check_ids($node, 'gone_rows', 'gone', [ 1 .. 100 ], 'topic consumed');
ok($kafka->control('topic-error gone UNKNOWN_TOPIC_OR_PART'), 'topic gone disappears');
ok( wait_for(
		$node, q{SELECT last_error ~ 'gone.*(Unknown topic or partition|no longer available)'
		         FROM tributary.streams WHERE name = 'gone'},
		't', 60),
	'deleted topic: reported in last_error');
stays_up('gone', 'deleted topic');
ok($kafka->control('topic-error gone NO_ERROR'), 'topic gone is back');
kcat_produce_ids($bs, 'gone', 101, 200);
check_ids($node, 'gone_rows', 'gone', [ 1 .. 200 ], 'deleted topic, then back');

# ---------------------------------------------------------------------------------------
# A stored offset past the partition's end (as after the topic is deleted and re-created):
# a warning, the position stored anew, and the partition read from its start.

my $p0 = kcat_count($bs, 'gone', 0);
sql($node, qq{
	CREATE TABLE reset_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('reset', 'reset_rows', 'kafka',
		'{"brokers": "$bs", "topic": "gone", "partitions": [0]}', enabled => false);
	INSERT INTO tributary.offsets (stream, source_stream, source_partition, position) VALUES ('reset', 'gone', '0', '100000');
	SELECT tributary.start('reset');
});
ok(wait_for($node, 'SELECT count(*) FROM reset_rows', $p0, 60),
	"offset out of range: partition 0 read again from its start ($p0 messages)");
ok($node->wait_for_log(
		qr/WARNING:  tributary stream "reset": stored offset 100000 of partition 0 of topic "gone" is out of range; going on at offset 0/,
		$log_offset),
	'offset out of range: a warning says so');
ok(wait_for($node, q{SELECT next_offset FROM tributary.kafka_offsets WHERE stream = 'reset'}, $p0, 60),
	'offset out of range: the stored offset is the partition end again');
is(sql($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'reset'}), '0',
	'offset out of range: no dead letter');

# ---------------------------------------------------------------------------------------
# An authentication failure, then the credentials fixed with alter_stream.

my $password = 'Sekr3t-never-logged';
# (the test's own statement is kept out of the log: log_statement = all would show it)
sql($node, qq{
	SET log_statement = 'none';
	CREATE TABLE auth_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('auth', 'auth_rows', 'kafka',
		'{"brokers": "$bs", "topic": "gone",
		  "librdkafka": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
		                 "sasl.username": "tributary", "sasl.password": "$password"}}');
});
ok( wait_for(
		$node, q{SELECT last_error LIKE '%SASL authentication%' FROM tributary.streams WHERE name = 'auth'},
		't', 60),
	'authentication failure: reported in last_error')
  or diag(sql($node, q{SELECT last_error FROM tributary.streams WHERE name = 'auth'}));
stays_up('auth', 'authentication failure');
is(sql($node, 'SELECT count(*) FROM auth_rows'), '0', 'authentication failure: nothing consumed');

# with two workers, last_error says which one
sql($node, q{SELECT tributary.alter_stream('auth', '{"parallelism": 2}')});
ok( wait_for(
		$node, q{SELECT last_error ~ '^worker #[12]: _AUTHENTICATION: .*SASL authentication'
		         FROM tributary.streams WHERE name = 'auth'}, 't', 60),
	'authentication failure, two workers: last_error names the worker')
  or diag(sql($node, q{SELECT last_error FROM tributary.streams WHERE name = 'auth'}));

sql($node, q{SELECT tributary.alter_stream('auth', '{"librdkafka": null}')});
check_ids($node, 'auth_rows', 'auth', [ 1 .. 200 ], 'credentials fixed');
ok(wait_for($node, q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'auth'}),
	'authentication failure: last_error is cleared');

# ---------------------------------------------------------------------------------------
# A target too slow to keep up: here, locked. The worker waits inside its batch and stops
# polling; librdkafka keeps fetching only until its queue holds queued.max.messages.kbytes
# (bounded to 1 MiB here, with fetches of at most 1 MiB). The broker meanwhile holds 16 MB
# the worker has not read: its private memory grows by far less than that, and once the
# lock goes every message lands once.

# RssAnon of a process, in kB: its private heap, where librdkafka's buffers live.
sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or die "cannot read /proc/$pid/status: $!";
	my ($kb) = map { /^RssAnon:\s+(\d+) kB/ ? $1 : () } <$fh>;
	close($fh);
	return $kb;
}

my $pad = 'x' x 1000;
sub produce_slow
{
	my ($from, $to) = @_;
	kcat_produce_dealt($bs, 'slow', 4, [ $from .. $to ], sub { qq({"id": $_[0], "pad": "$pad"}) });
}

sql($node, qq{
	CREATE TABLE slow_rows (id bigint PRIMARY KEY, pad text);
	SELECT tributary.create_stream('slow', 'slow_rows', 'kafka',
		'{"brokers": "$bs", "topic": "slow", "batch_size": 100,
		  "librdkafka": {"queued.max.messages.kbytes": 1024, "fetch.max.bytes": 1048576,
		                 "max.partition.fetch.bytes": 262144}}');
});
produce_slow(1, 100);
check_ids($node, 'slow_rows', 'slow', [ 1 .. 100 ], 'slow target: before the lock');

my $lock = $node->background_psql('postgres');
$lock->query_safe('BEGIN');
$lock->query_safe('LOCK TABLE slow_rows IN EXCLUSIVE MODE');
produce_slow(101, 104);
ok( wait_for(
		$node, q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		         WHERE a.application_name = 'tributary: slow' AND l.locktype = 'relation'
		           AND l.relation = 'slow_rows'::regclass AND NOT l.granted}, '1', 60),
	'slow target: the worker waits for the table inside its batch');
my $slow_pid = worker_pid($node, 'slow');
my $before_kb = rss_anon_kb($slow_pid);

produce_slow(105, 16100);    # 16 MB more, 4 MB per partition (the mock keeps 5 MiB)
sleep 5;                     # time for librdkafka to fill its queue, and to stop there
my $peak_kb = 0;
for (1 .. 5)
{
	my $kb = rss_anon_kb($slow_pid);
	$peak_kb = $kb if $kb > $peak_kb;
	sleep 1;
}
my $grew_kb = $peak_kb - $before_kb;
note("slow target: worker RssAnon $before_kb kB while blocked, at most $peak_kb kB after 16 MB were produced");
cmp_ok($grew_kb, '<', 8 * 1024,
	'slow target: the worker buffered less than half of the 16 MB it did not read');
is(worker_pid($node, 'slow'), $slow_pid, 'slow target: the same worker waits');
is(sql($node, 'SELECT count(*) FROM slow_rows'), '100', 'slow target: nothing new committed while locked');

$lock->query_safe('COMMIT');
$lock->quit;
check_ids($node, 'slow_rows', 'slow', [ 1 .. 16100 ], 'slow target: after the lock');

# ---------------------------------------------------------------------------------------
# No crash loops in the log, and no password.

my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/worker #\d+ of stream "(ghost|gone|reset|auth|slow)" exited/, 'no worker of these streams exited');
unlike($log, qr/\Q$password\E/, 'the password never reaches the server log');
like($log, qr/tributary stream "auth": .*SASL/, 'the authentication failure is in the server log');

$node->stop;
$kafka->stop;
done_testing();
