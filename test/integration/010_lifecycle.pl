# The launcher keeps one worker per started non-local stream: start, stop, drop,
# alter_stream reaching a running worker, a terminated worker restarted with backoff,
# a worker killed with SIGKILL coming back after crash recovery, and a restarted
# launcher that adopts no orphans (one worker per stream, always).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

# restart_after_crash is on by default in PostgreSQL; the test framework turns it off.
my $node = tributary_node('lifecycle', conf => 'restart_after_crash = on');

$node->safe_psql('postgres', q{
	CREATE TABLE events (id bigint, body text);
	SELECT tributary.create_stream('orders', 'events', 'kafka',
		'{"brokers": "127.0.0.1:1", "topic": "orders"}');
	SELECT tributary.create_stream('clicks', 'events', 'kafka',
		'{"brokers": "127.0.0.1:1", "topic": "clicks"}', enabled => false);
	SELECT tributary.create_stream('pushed', 'events', 'local');
});

my $workers_sql = workers_sql();    # every stream's workers

ok(defined launcher_pid($node), 'the launcher runs');
ok(wait_for($node, $workers_sql, 'tributary: orders'),
	'a started kafka stream gets a worker; a stopped one and a local one do not');
is($node->safe_psql('postgres', q{SELECT state FROM tributary.streams WHERE name = 'orders'}),
	'running', 'tributary.streams shows the worker running');
my $pid = worker_pid($node, 'orders');
is($node->safe_psql('postgres', q{SELECT worker_pid FROM tributary.stream_stats WHERE stream = 'orders'}),
	$pid, 'stream_stats shows the worker pid from shared memory');

# start
$node->safe_psql('postgres', q{SELECT tributary.start('clicks')});
ok(wait_for($node, $workers_sql, 'tributary: clicks,tributary: orders'),
	'start gives the stream a worker');

# stop
$node->safe_psql('postgres', q{SELECT tributary.stop('clicks')});
ok(wait_for($node, $workers_sql, 'tributary: orders'), 'stop ends the worker');
is($node->safe_psql('postgres', q{SELECT state FROM tributary.streams WHERE name = 'clicks'}),
	'stopped', 'the stopped stream shows as stopped');

# alter_stream reaches the running worker
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{SELECT tributary.alter_stream('orders', '{"batch_size": 50}')});
ok( wait_for(
		$node,
		q{SELECT s.worker_config_version = c.config_version
		  FROM tributary.stream_stats s JOIN tributary.streams c ON c.name = s.stream
		  WHERE s.stream = 'orders'}),
	'the worker reloads the new config version');
ok($node->log_contains('stream "orders" reloaded its options \(config version 2\)', $log_offset),
	'the worker logs the reload');
is(worker_pid($node, 'orders'), $pid, 'alter_stream reloads in place: same worker');

# a terminated worker comes back (launcher restarts it with backoff)
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( wait_for(
		$node,
		qq{SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity
		   WHERE application_name = 'tributary: orders'}),
	'a terminated worker is restarted by the launcher');
$pid = worker_pid($node, 'orders');

# kill -9: the postmaster reinitializes; the launcher comes back and restarts the worker
kill 'KILL', $pid;
ok( wait_for(
		$node,
		qq{SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity
		   WHERE application_name = 'tributary: orders'}),
	'a worker killed with SIGKILL comes back after crash recovery');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tributary.streams}),
	'3', 'the catalog survived crash recovery');

# a terminated launcher is restarted by the postmaster; it terminates the worker its
# predecessor left and starts its own, so the stream still has exactly one
my $launcher = launcher_pid($node);
my $orphan = worker_pid($node, 'orders');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( wait_for(
		$node,
		qq{SELECT count(*) = 1 AND min(pid) <> $launcher FROM pg_stat_activity
		   WHERE backend_type = 'tributary launcher'}),
	'the launcher is restarted by the postmaster');
ok( wait_for(
		$node,
		qq{SELECT count(*) = 1 AND min(pid) <> $orphan FROM pg_stat_activity
		   WHERE application_name = 'tributary: orders'}),
	'the new launcher replaces the orphaned worker: exactly one worker for the stream');
ok($node->log_contains("terminating stream worker $orphan left by a previous launcher", $log_offset),
	'the orphan was terminated by the new launcher');
$node->safe_psql('postgres', q{SELECT tributary.start('clicks')});
ok(wait_for($node, $workers_sql, 'tributary: clicks,tributary: orders'),
	'the new launcher reacts to start');

# drop
$node->safe_psql('postgres', q{SELECT tributary.drop_stream('orders')});
ok(wait_for($node, $workers_sql, 'tributary: clicks'), 'drop_stream ends the worker');
is( $node->safe_psql('postgres', q{SELECT count(*) FROM tributary.stream_stats WHERE stream = 'orders'}),
	'0', 'the dropped stream is gone from stream_stats');

# a clean shutdown stops everything; a restart brings the started stream back
$node->restart;
ok(wait_for($node, $workers_sql, 'tributary: clicks'), 'after a restart the started stream runs again');

# a worker that cannot load its stream (its target was dropped) says why in last_error,
# and the stream fails instead of restarting forever
$node->safe_psql('postgres', q{
	CREATE TABLE doomed (id int);
	SELECT tributary.create_stream('doomed', 'doomed', 'kafka',
		'{"brokers": "127.0.0.1:1", "topic": "doomed"}');
});
ok(wait_for($node, $workers_sql, 'tributary: clicks,tributary: doomed'), 'the doomed stream runs');
my $doomed = worker_pid($node, 'doomed');
$node->safe_psql('postgres', "DROP TABLE doomed; SELECT pg_terminate_backend($doomed)");
ok( wait_for(
		$node,
		q{SELECT last_error ~ '^target table with OID \d+ does not exist$' AND last_error_at IS NOT NULL
		  FROM tributary.streams WHERE name = 'doomed'}),
	'the restarted worker records in last_error that its target is gone');
is($node->safe_psql('postgres', q{SELECT state FROM tributary.streams WHERE name = 'doomed'}),
	'failed', 'the stream is shown as failed: no worker restarts until it is fixed');
$node->safe_psql('postgres', q{SELECT tributary.drop_stream('doomed')});

# re-creating the extension restarts stream ids at 1: the launcher must not take the new
# stream for an old one, and the new stream must not inherit old counters
is( $node->safe_psql('postgres', q{
		SELECT s.id FROM tributary.stream_catalog s WHERE s.name = 'clicks'}),
	'2', 'the old stream with id 2 is clicks');
$node->safe_psql('postgres', q{SELECT tributary.ingest('clicks', '{"id": 1}')});
is($node->safe_psql('postgres', q{SELECT messages FROM tributary.stream_stats WHERE stream = 'clicks'}),
	'1', 'and it has counters');
$node->safe_psql('postgres', 'DROP EXTENSION tributary');
ok(wait_for($node, $workers_sql, ''), 'after DROP EXTENSION the launcher stops every worker');
$node->safe_psql('postgres', q{
	CREATE EXTENSION tributary;
	SELECT tributary.create_stream('reborn', 'events', 'kafka',
		'{"brokers": "127.0.0.1:1", "topic": "reborn"}');
	SELECT tributary.create_stream('local_one', 'events');
});
ok(wait_for($node, $workers_sql, 'tributary: reborn'), 'the re-created extension\'s stream gets a worker');
is( $node->safe_psql('postgres', q{SELECT id FROM tributary.stream_catalog WHERE name = 'local_one'}),
	'2', 'the new local_one reuses id 2');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(stream || ':' || messages, ',' ORDER BY stream) FROM tributary.stream_stats}),
	'local_one:0,reborn:0', 'streams of the re-created extension start with zero counters');

$node->stop;
done_testing();
