# test/integration/000_harness.pl: smoke test of the test harness itself. A node with
# tributary preloaded starts, the extension is created, and the launcher background
# worker shows up; a node without the preload has no launcher.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

my $node = tributary_node('harness');

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'tributary', 'tributary is in shared_preload_libraries');

like(
	$node->safe_psql('postgres', 'SELECT extname FROM pg_extension ORDER BY 1'),
	qr/^tributary$/m,
	'CREATE EXTENSION tributary ran');

ok( wait_for(
		$node,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'tributary launcher'"
	),
	'launcher appears in pg_stat_activity');
ok(defined launcher_pid($node), 'launcher_pid finds it');
is(worker_pid($node, 'no such stream'), undef, 'worker_pid of an unknown stream is undef');

$node->stop;

# Without the preload: no launcher, and the node still works.
my $plain = tributary_node('plain', preload => 0);
is($plain->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'preload => 0 leaves shared_preload_libraries empty');
is(launcher_pid($plain), undef, 'no launcher without the preload');
$plain->stop;

done_testing();
