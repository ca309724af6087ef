# Without shared_preload_libraries, loading tributary fails with an error that says what
# to do, and CREATE EXTENSION leaves nothing behind.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

my $node = tributary_node('not_preloaded', preload => 0);

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE EXTENSION tributary');
isnt($ret, 0, 'CREATE EXTENSION fails when the library is not preloaded');
like($stderr, qr/ERROR:  tributary must be loaded via shared_preload_libraries/,
	'the error says the library must be preloaded');
like($stderr, qr/HINT:  Add tributary to shared_preload_libraries in postgresql.conf and restart the server\./,
	'the hint says how to fix it');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'tributary'}),
	'0', 'no extension was created');

($ret, $stdout, $stderr) = $node->psql('postgres', q{LOAD 'tributary'});
like($stderr, qr/must be loaded via shared_preload_libraries/, 'LOAD gives the same error');

# fixing the configuration as the hint says makes it work
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'tributary'");
$node->restart;
$node->safe_psql('postgres', 'CREATE EXTENSION tributary');
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tributary launcher'}, '1'),
	'after preloading, the extension is created and the launcher runs');

$node->stop;
done_testing();
