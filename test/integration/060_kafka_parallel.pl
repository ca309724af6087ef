# Several workers per Kafka stream ("parallelism"), against the local broker:
#
# - a consumer group of 2 workers splits 4 partitions; every id produced is stored once
#   across kill -9 of one worker (which makes the server restart all its processes) and
#   while parallelism is lowered to 1 and raised to 3;
# - a static "partitions" list is dealt out to the workers, and when a partition moves from
#   one worker to another while the first has a batch of it in flight, the partition fence
#   makes the second wait for that batch before positioning the partition (nothing
#   skipped), or skip in its own batch what the first stored (nothing twice);
# - the cooperative protocol, with a worker terminated alone and parallelism raised;
# - short of workers, every stream gets its first worker before any gets a second;
# - with a "group" given by option, a new stream in that group starts where the group's
#   committed offsets are, not at "start";
# - with static group membership (group.instance.id), each worker joins as its own member.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { par => 4, gap => 2, fence => 2, shared => 2, statmem => 4 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('parallel', conf => "restart_after_crash = on\nlog_min_messages = info");

# Whether the process named $appname comes to wait for an advisory lock matching $cond
# (objid = 4242: the test's gate; objsubid = 21586: a partition fence).
sub waits_for_advisory_lock
{
	my ($appname, $cond) = @_;
	return wait_for($node, qq{
		SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE a.application_name = '$appname' AND l.locktype = 'advisory'
		  AND l.$cond AND NOT l.granted}, '1', 60);
}

# ---------------------------------------------------------------------------------------
# A consumer group of two workers.

sql($node, qq{
	CREATE TABLE par_rows (id bigint PRIMARY KEY);
	-- 20 ms per batch: slow enough to crash a worker mid-stream
	CREATE FUNCTION par_slow() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END \$\$;
	CREATE TRIGGER par_slow AFTER INSERT ON par_rows FOR EACH STATEMENT EXECUTE FUNCTION par_slow();
	SELECT tributary.create_stream('par', 'par_rows', 'kafka',
		'{"brokers": "$bs", "topic": "par", "parallelism": 2, "batch_size": 50, "batch_ms": 20}');
});
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'par'}, '2', 60),
	'tributary.streams counts 2 workers');
is(worker_names($node, 'par'), 'tributary: par #1,tributary: par #2', 'each worker is named with its number');

kcat_produce_ids($bs, 'par', 1, 4000, partitions => 4);
check_ids($node, 'par_rows', 'par', [ 1 .. 4000 ], 'two workers in one group');
ok( wait_for(
		$node, q{
		SELECT count(DISTINCT worker_pid) || '/' || count(*)
		FROM tributary.stream_stats WHERE stream = 'par' AND partition IS NOT NULL},
		'2/4', 60),
	'stream_stats: the 4 partitions are split between the 2 workers');
is( sql($node, q{SELECT bool_and(worker_pid IN (SELECT pid FROM pg_stat_activity
		                                     WHERE application_name LIKE 'tributary: par #%'))
		FROM tributary.stream_stats WHERE stream = 'par' AND partition IS NOT NULL}),
	't', 'stream_stats: each partition row names a running worker of the stream');

# kill -9 of one worker mid-stream (the server restarts all its processes)
kcat_produce_ids($bs, 'par', 4001, 8000, partitions => 4);
ok(wait_for($node, 'SELECT count(*) BETWEEN 4100 AND 7500 FROM par_rows', 't', 60), 'mid-stream');
my $victim = sql($node, q{SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: par #2'});
ok($victim, 'worker #2 runs');
kill 'KILL', $victim;
check_ids($node, 'par_rows', 'par', [ 1 .. 8000 ], 'after kill -9 of one worker');
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'par'}, '2', 60),
	'both workers run again');

# fewer workers, then more, while messages keep coming
sql($node, q{SELECT tributary.alter_stream('par', '{"parallelism": 1}')});
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'par'}, '1', 60),
	'parallelism 1: one worker left');
ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tributary: par%'", '1', 60),
	'parallelism 1: the second worker is gone');
ok(wait_for($node, q{SELECT string_agg(application_name, ',') FROM pg_stat_activity
		WHERE application_name LIKE 'tributary: par%'}, 'tributary: par', 60),
	'parallelism 1: the one worker drops its number');
ok($node->log_contains('stream "par" worker #1 keeps its consumer'),
	'parallelism 1: in a consumer group the remaining worker keeps its consumer');
kcat_produce_ids($bs, 'par', 8001, 9000, partitions => 4);
check_ids($node, 'par_rows', 'par', [ 1 .. 9000 ], 'with one worker');
sql($node, q{SELECT tributary.alter_stream('par', '{"parallelism": 3}')});
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'par'}, '3', 60),
	'parallelism 3: three workers');
kcat_produce_ids($bs, 'par', 9001, 12000, partitions => 4);
check_ids($node, 'par_rows', 'par', [ 1 .. 12000 ], 'with three workers');
is( sql($node, q{SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition)
		FROM tributary.kafka_offsets WHERE stream = 'par'}),
	'0:3000,1:3000,2:3000,3:3000', 'stored offsets are the end of every partition');

# ---------------------------------------------------------------------------------------
# The partition fence, when positioning a partition. Worker #1 is stuck in the first batch
# of partition 0 of a stream that starts at "latest" (a trigger waits for an advisory lock
# this test holds), and more messages arrive; alter_stream deals partition 0 to a new
# worker #2. Had #2 read the position at once, it would start at the end and skip 101..150;
# it waits at the fence for #1's commit and starts at the offset #1 stored.

sql($node, qq{
	CREATE TABLE gap_rows (id bigint PRIMARY KEY);
	CREATE FUNCTION gap_gate() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END \$\$;
	CREATE TRIGGER gap_gate AFTER INSERT ON gap_rows FOR EACH STATEMENT EXECUTE FUNCTION gap_gate();
	SELECT tributary.create_stream('gap', 'gap_rows', 'kafka',
		'{"brokers": "$bs", "topic": "gap", "partitions": [0], "start": "latest", "batch_ms": 200}');
});
ok( wait_for(
		$node, q{SELECT count(*) FROM tributary.stream_stats
		         WHERE stream = 'gap' AND partition = 0 AND high_watermark IS NOT NULL}, '1', 60),
	'gap: partition 0 is positioned at its end');

my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(4242)');
kcat_produce_ids($bs, 'gap', 1, 100, partitions => 1);    # all to partition 0
ok(waits_for_advisory_lock('tributary: gap', 'objid = 4242'),
	'gap: worker #1 is stuck in its first batch');
kcat_produce_ids($bs, 'gap', 101, 150, partitions => 1);
sql($node, q{SELECT tributary.alter_stream('gap', '{"partitions": [1, 0], "parallelism": 2}')});
ok(waits_for_advisory_lock('tributary: gap #2', 'objsubid = 21586'),
	'gap: worker #2 got partition 0 and waits at its fence before positioning it');
is(sql($node, 'SELECT count(*) FROM gap_rows'), '0', 'gap: nothing committed yet');
$gate->query_safe('SELECT pg_advisory_unlock(4242)');
$gate->quit;
check_ids($node, 'gap_rows', 'gap', [ 1 .. 150 ], 'gap: after the stuck batch commits');

# The partition fence, in a batch. Batches of stream "fence" wait 10 s to fill. Worker #1
# is collecting 101..200 from partition 0 when alter_stream deals the partition to a new
# worker #2, which positions it at the stored offset 100 (nothing is in flight yet) and
# collects the same messages. #1's batch began first, so it commits first; #2's batch
# then finds offset 200 stored and skips what #1 stored.

sql($node, qq{
	CREATE TABLE fence_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('fence', 'fence_rows', 'kafka',
		'{"brokers": "$bs", "topic": "fence", "partitions": [0], "batch_ms": 10000}');
});
kcat_produce_ids($bs, 'fence', 1, 100, partitions => 1);    # all to partition 0
check_ids($node, 'fence_rows', 'fence', [ 1 .. 100 ], 'fence: partition 0 alone');
my $first = worker_pid($node, 'fence');
kcat_produce_ids($bs, 'fence', 101, 200, partitions => 1);
sleep 1;    # worker #1 has them (fetched within milliseconds)
sql($node, q{SELECT tributary.alter_stream('fence', '{"partitions": [1, 0], "parallelism": 2}')});
check_ids($node, 'fence_rows', 'fence', [ 1 .. 200 ], 'fence: both workers held partition 0');
ok($node->wait_for_log(
		qr/worker #2 skipped 100 messages of partition 0 of topic "fence" stored by another worker/),
	'fence: worker #2 skipped the 100 messages worker #1 stored');
ok( wait_for(
		$node, q{SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'tributary: fence #1'}),
	'fence: worker #1 reloads as #1 of 2');
is($first, sql($node, q{SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: fence #1'}),
	'fence: worker #1 is the same process (it committed its batch, then reloaded)');

# both go on: partition 0 with worker #2, partition 1 with worker #1
kcat_produce_ids($bs, 'fence', 201, 400, partitions => 2);
check_ids($node, 'fence_rows', 'fence', [ 1 .. 400 ], 'fence: after the move');
ok( wait_for(
		$node, q{
		SELECT string_agg(s.partition || ':' || a.application_name, ',' ORDER BY s.partition)
		FROM tributary.stream_stats s JOIN pg_stat_activity a ON a.pid = s.worker_pid
		WHERE s.stream = 'fence' AND s.partition IS NOT NULL},
		'0:tributary: fence #2,1:tributary: fence #1', 60),
	'fence: stream_stats shows which worker consumes each partition');

# ---------------------------------------------------------------------------------------
# The cooperative protocol (cooperative-sticky): partitions move one by one between the
# workers, each keeping the held messages of the partitions it keeps. One worker ends
# (terminated alone, no server restart) and comes back, and parallelism changes, while
# messages flow.

sql($node, qq{
	CREATE TABLE coop_rows (id bigint PRIMARY KEY);
	CREATE TRIGGER coop_slow AFTER INSERT ON coop_rows FOR EACH STATEMENT EXECUTE FUNCTION par_slow();
	SELECT tributary.stop('par');
	SELECT tributary.create_stream('coop', 'coop_rows', 'kafka',
		'{"brokers": "$bs", "topic": "par", "parallelism": 2, "batch_size": 50, "batch_ms": 20,
		  "librdkafka": {"partition.assignment.strategy": "cooperative-sticky"}}');
});
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'coop'}, '2', 60),
	'cooperative: two workers');
check_ids($node, 'coop_rows', 'coop', [ 1 .. 12000 ], 'cooperative: the topic so far');
kcat_produce_ids($bs, 'par', 12001, 16000, partitions => 4);
ok(wait_for($node, 'SELECT count(*) > 12100 FROM coop_rows', 't', 60), 'cooperative: mid-stream');
my $coop2 = sql($node, q{SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: coop #2'});
my $coop_log = -s $node->logfile;
sql($node, "SELECT pg_terminate_backend($coop2)");
check_ids($node, 'coop_rows', 'coop', [ 1 .. 16000 ], 'cooperative: a worker terminated alone');
ok($node->log_contains('worker #2 of stream "coop" exited', $coop_log),
	'cooperative: the terminated worker was restarted by the launcher');
sql($node, q{SELECT tributary.alter_stream('coop', '{"parallelism": 3}')});
kcat_produce_ids($bs, 'par', 16001, 18000, partitions => 4);
check_ids($node, 'coop_rows', 'coop', [ 1 .. 18000 ], 'cooperative: parallelism 3');
ok(wait_for($node, q{SELECT workers FROM tributary.streams WHERE name = 'coop'}, '3', 60),
	'cooperative: three workers');
ok($node->log_contains('stream "coop" worker #\d: assigned \d+ partitions \(cooperative rebalance\)'),
	'cooperative: assignments are incremental');
ok(!$node->log_contains('stream "coop" worker #\d: \w+ \d+ partitions \(eager rebalance\)'),
	'cooperative: no eager rebalance');
sql($node, q{SELECT tributary.stop('coop')});

# An incremental revocation: stream coop_x holds all 4 partitions of its group; stream
# coop_y joins the same group, and coop_x gives partitions up (dropping only their held
# messages). coop_x stores nothing twice; together they store every id.
sql($node, qq{
	CREATE TABLE coop_x (id bigint PRIMARY KEY);
	CREATE TABLE coop_y (id bigint PRIMARY KEY);
	CREATE TRIGGER coop_x_slow AFTER INSERT ON coop_x FOR EACH STATEMENT EXECUTE FUNCTION par_slow();
	SELECT tributary.create_stream('coop_x', 'coop_x', 'kafka',
		'{"brokers": "$bs", "topic": "par", "group": "coop-shared", "batch_size": 50, "batch_ms": 20,
		  "librdkafka": {"partition.assignment.strategy": "cooperative-sticky"}}');
});
ok(wait_for($node, 'SELECT count(*) > 1000 FROM coop_x', 't', 60), 'cooperative: coop_x consumes');
$coop_log = -s $node->logfile;
sql($node, qq{
	SELECT tributary.create_stream('coop_y', 'coop_y', 'kafka',
		'{"brokers": "$bs", "topic": "par", "group": "coop-shared", "batch_size": 50, "batch_ms": 20,
		  "librdkafka": {"partition.assignment.strategy": "cooperative-sticky"}}');
});
# (librdkafka 2.0.2 against the local broker revokes all 4 and assigns 2 back, still by the
# incremental protocol)
ok($node->wait_for_log(qr/stream "coop_x" worker #1: revoked [24] partitions \(cooperative rebalance\)/, $coop_log),
	'cooperative: coop_x gives up partitions to coop_y, incrementally');
ok( wait_for(
		$node, q{SELECT count(*) FROM (SELECT id FROM coop_x UNION SELECT id FROM coop_y) u}, '18000', 120),
	'cooperative: coop_x and coop_y together store every id');
is( sql($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream IN ('coop_x', 'coop_y')}), '0',
	'cooperative: no dead letter (nothing stored twice in one table)');
sql($node, q{SELECT tributary.stop('coop_x'); SELECT tributary.stop('coop_y')});

# ---------------------------------------------------------------------------------------
# (fewer workers from here on: tributary.max_workers is 8)
sql($node, q{SELECT tributary.stop('gap')});
ok(wait_for($node, q{SELECT sum(workers) FROM tributary.streams}, '2', 60), 'par and gap stopped');

# ---------------------------------------------------------------------------------------
# A group given by option: a stream new to it starts at the group's committed offsets.

sql($node, qq{
	CREATE TABLE shared_a (id bigint PRIMARY KEY);
	CREATE TABLE shared_b (id bigint PRIMARY KEY);
	CREATE TABLE shared_c (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('shared_a', 'shared_a', 'kafka',
		'{"brokers": "$bs", "topic": "shared", "group": "shared-group"}');
});
kcat_produce_ids($bs, 'shared', 1, 100, partitions => 2);
check_ids($node, 'shared_a', 'shared_a', [ 1 .. 100 ], 'group: the first stream of the group');
# Kafka's committed offsets follow each PostgreSQL commit; stopping leaves the group
sleep 1;
sql($node, q{SELECT tributary.stop('shared_a')});
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tributary: shared_a'}, '0', 60),
	'group: the first stream stopped');
kcat_produce_ids($bs, 'shared', 101, 150, partitions => 2);
sql($node, qq{
	SELECT tributary.create_stream('shared_b', 'shared_b', 'kafka',
		'{"brokers": "$bs", "topic": "shared", "group": "shared-group"}');
	SELECT tributary.create_stream('shared_c', 'shared_c', 'kafka',
		'{"brokers": "$bs", "topic": "shared"}');
});
check_ids($node, 'shared_b', 'shared_b', [ 101 .. 150 ],
	'group: a new stream in the group goes on from its committed offsets');
check_ids($node, 'shared_c', 'shared_c', [ 1 .. 150 ],
	'group: a stream with its own group starts at "start" (earliest)');

# ---------------------------------------------------------------------------------------
# Static group membership: worker n joins with group.instance.id "<id>-<n>" (two members
# sharing one instance id would fence each other), and the workers split the partitions.

sql($node, qq{
	CREATE TABLE statmem_rows (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('statmem', 'statmem_rows', 'kafka',
		'{"brokers": "$bs", "topic": "statmem", "parallelism": 2,
		  "librdkafka": {"group.instance.id": "statmem-host1"}}');
});
kcat_produce_ids($bs, 'statmem', 1, 200, partitions => 4);
check_ids($node, 'statmem_rows', 'statmem', [ 1 .. 200 ], 'static membership: two workers');
ok( wait_for(
		$node, q{SELECT count(DISTINCT worker_pid) FROM tributary.stream_stats
		         WHERE stream = 'statmem' AND partition IS NOT NULL}, '2', 60),
	'static membership: both workers consume partitions');
ok($node->log_contains('worker #1 consuming from [^ ]+ as group "[^"]+", instance "statmem-host1-1"')
	  && $node->log_contains('worker #2 consuming from [^ ]+ as group "[^"]+", instance "statmem-host1-2"'),
	'static membership: each worker has its own instance id');

# ---------------------------------------------------------------------------------------
# Short of workers (tributary.max_workers 3): worker #1 of every stream comes before
# worker #2 of any, so a stream declared next to one with a high parallelism still runs.

sql($node, q{SELECT tributary.stop(name) FROM tributary.streams WHERE enabled});
$node->append_conf('postgresql.conf', 'tributary.max_workers = 3');
$node->restart;
sql($node, qq{
	CREATE TABLE wide_rows (id bigint);
	CREATE TABLE narrow_rows (id bigint);
	BEGIN;
	SELECT tributary.create_stream('wide', 'wide_rows', 'kafka',
		'{"brokers": "$bs", "topic": "par", "parallelism": 3}');
	SELECT tributary.create_stream('narrow', 'narrow_rows', 'kafka', '{"brokers": "$bs", "topic": "shared"}');
	COMMIT;
});
ok( wait_for(
		$node, q{SELECT string_agg(name || ':' || workers, ',' ORDER BY name)
		         FROM tributary.streams WHERE name IN ('wide', 'narrow')},
		'narrow:1,wide:2', 60),
	'max_workers 3: the narrow stream got its worker, the wide one 2 of 3');
ok($node->log_contains('tributary launcher is at tributary.max_workers \(3\)'),
	'max_workers 3: the launcher says a stream waits');

$node->stop;
$kafka->stop;
done_testing();
