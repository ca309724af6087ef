# How processes find each other in shared memory without trusting a pid alone. With
# tributary.naptime at an hour, only the commit-time wakeup (the launcher's latch, found
# through its PGPROC in shared memory) can make the launcher act within the test's
# timeouts: start and stop reach it at once, and so they do after the launcher was
# replaced (a new PGPROC). The replacement launcher terminates the worker its
# predecessor left, having confirmed it against the postmaster's worker registry, and
# the stream ends with exactly one worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

my $node = tributary_node('liveness', conf => "tributary.naptime = '1h'");

my $workers_sql = q{SELECT string_agg(application_name, ',' ORDER BY application_name)
	FROM pg_stat_activity WHERE backend_type = 'tributary stream worker'};

# the launcher's first pass happens at its start; everything after needs a wakeup
ok(defined launcher_pid($node), 'the launcher runs');
ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tributary launcher' AND wait_event = 'Extension'", 1, 30),
	'the launcher sleeps');

$node->safe_psql('postgres', q{
	CREATE TABLE events (id bigint);
	SELECT tributary.create_stream('alpha', 'events', 'kafka',
		'{"brokers": "127.0.0.1:1", "topic": "alpha"}');
});
ok(wait_for($node, $workers_sql, 'tributary: alpha', 30), 'create_stream wakes the launcher');

$node->safe_psql('postgres', q{SELECT tributary.stop('alpha')});
ok(wait_for($node, $workers_sql, '', 30), 'stop wakes the launcher');
$node->safe_psql('postgres', q{SELECT tributary.start('alpha')});
ok(wait_for($node, $workers_sql, 'tributary: alpha', 30), 'start wakes the launcher');

# replace the launcher: the new one terminates the old one's worker and starts its own
my $launcher = launcher_pid($node);
my $orphan = worker_pid($node, 'alpha');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( wait_for(
		$node,
		qq{SELECT count(*) = 1 AND min(pid) <> $orphan FROM pg_stat_activity
		   WHERE application_name = 'tributary: alpha'}, 't', 60),
	'the new launcher replaces the orphaned worker: one worker for the stream');
ok($node->log_contains("terminating stream worker $orphan left by a previous launcher", $log_offset),
	'the orphan, confirmed as a live stream worker, was terminated');
is( $node->safe_psql('postgres', q{SELECT workers FROM tributary.streams WHERE name = 'alpha'}),
	1, 'shared memory shows one worker for the stream');

# the new launcher is woken through its own PGPROC's latch
$node->safe_psql('postgres', q{SELECT tributary.stop('alpha')});
ok(wait_for($node, $workers_sql, '', 30), 'stop wakes the new launcher');
$node->safe_psql('postgres', q{SELECT tributary.start('alpha')});
ok(wait_for($node, $workers_sql, 'tributary: alpha', 30), 'start wakes the new launcher');

$node->stop;
done_testing();
