# test/integration/TributaryTest.pm: helpers for tributary's integration tests, on top of
# PostgreSQL's own Perl TAP framework (PostgreSQL::Test::Cluster / ::Utils).
#
# test/run.sh puts this directory and PostgreSQL's src/test/perl on PERL5LIB and sets
# PG_REGRESS, TESTDIR and PATH the way PostgreSQL's `make check` does, so a test is just:
#
#   use strict;
#   use warnings;
#   use PostgreSQL::Test::Cluster;
#   use PostgreSQL::Test::Utils;
#   use Test::More;
#   use TributaryTest;
#
#   my $node = tributary_node('main');            # preloaded, started, extension created
#   ok(wait_for($node, "SELECT count(*) FROM t", '3'), 'rows arrived');
#   my $pid = worker_pid($node, 'orders');         # pid of stream "orders"'s worker
#   done_testing();
#
# Exports:
#   tributary_node($name, %opts)   a new, started node. Options:
#       conf             => string appended to postgresql.conf (after our defaults)
#       preload          => 0: do not put tributary in shared_preload_libraries
#       create_extension => 0: do not run CREATE EXTENSION tributary
#       start            => 0: only init and configure; the caller starts it (and then
#                           creates the extension itself)
#       test_stage       => 1: also preload test/modules/tributary_test_stage (after
#                           tributary, whose TribRegisterStage it links against), the stage
#                           that records what it sees; see test_stage_tables
#     Defaults written: shared_preload_libraries = 'tributary',
#     tributary.database = 'postgres', tributary.naptime = '1s',
#     max_worker_processes = 32.
#   test_stage_tables($node)       create, in database postgres, the tables the test stage
#       records into (public.tributary_test_stage_seen and _batches), from
#       test/modules/tributary_test_stage/tributary_test_stage.sql.
#   wait_for($node, $sql, $expected = 't', $timeout = PG_TEST_TIMEOUT_DEFAULT)
#       poll $sql in database postgres until its output (psql -At) equals $expected;
#       returns 1, or 0 after the timeout (with the last output as a diag).
#   worker_pid($node, $stream)     pid of the stream's worker (backend_type
#       'tributary stream worker', application_name 'tributary: <stream>'), or undef.
#   launcher_pid($node)            pid of the launcher (backend_type 'tributary launcher'),
#       or undef.
#   sql_literal($string)           $string as a quoted SQL literal.
#   sql($node, $sql)               $node->safe_psql in database postgres: its output, or
#       die on an error.
#   sql_fails($node, $sql)         run $sql in database postgres expecting an error: its
#       stderr, or undef when it succeeded.
#   workers_sql($stream)           SQL giving the application_names of the stream workers,
#       sorted and comma-separated ("tributary: s" for one worker, "tributary: s #1,..."
#       for several); of every stream when $stream is undef. For wait_for.
#   worker_names($node, $stream)   the output of workers_sql($stream), now.
#   check_ids($node, $table, $stream, \@ids, $what)
#       two tests: $table comes to hold as many rows as @ids (waits up to 120 s), then
#       every id of @ids is in its id column exactly once, nothing else is, and $stream
#       has no dead letter.
#   check_entry_ids($node, $table, $column, $stream, \@ids, $what)
#       the same for text ids (Redis entry ids) in $column: $table comes to hold as many
#       rows as @ids, every id of @ids is in $column exactly once, nothing else is (NULL
#       neither), and $stream has no dead letter.

package TributaryTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(tributary_node test_stage_tables wait_for worker_pid launcher_pid sql_literal
  sql sql_fails workers_sql worker_names check_ids check_entry_ids);

sub tributary_node
{
	my ($name, %opts) = @_;
	my $preload = defined $opts{preload} ? $opts{preload} : 1;
	my $create = defined $opts{create_extension} ? $opts{create_extension} : 1;
	my $start = defined $opts{start} ? $opts{start} : 1;
	my $libs = $opts{test_stage} ? 'tributary,tributary_test_stage' : 'tributary';

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;

	my $conf = "\n# Added by TributaryTest.pm\n";
	$conf .= "shared_preload_libraries = '$libs'\n" if $preload;
	$conf .= "tributary.database = 'postgres'\n";
	$conf .= "tributary.naptime = '1s'\n";
	$conf .= "max_worker_processes = 32\n";
	$conf .= "$opts{conf}\n" if defined $opts{conf};
	$node->append_conf('postgresql.conf', $conf);

	return $node unless $start;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION tributary')
	  if $preload && $create;
	return $node;
}

sub test_stage_tables
{
	my ($node) = @_;
	my $file = File::Spec->catfile(dirname(File::Spec->rel2abs(__FILE__)),
		'..', 'modules', 'tributary_test_stage', 'tributary_test_stage.sql');
	open(my $fh, '<', $file) or die "cannot read $file: $!";
	local $/;
	my $ddl = <$fh>;
	close $fh;
	$node->safe_psql('postgres', $ddl);
	return;
}

sub wait_for
{
	my ($node, $sql, $expected, $timeout) = @_;
	$expected = 't' unless defined $expected;

	# poll_query_until tries 10 * timeout_default times, 0.1 s apart.
	local $PostgreSQL::Test::Utils::timeout_default =
	  defined $timeout ? $timeout : $PostgreSQL::Test::Utils::timeout_default;
	return $node->poll_query_until('postgres', $sql, $expected) ? 1 : 0;
}

sub sql_literal
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub sql
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sub sql_fails
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err);
	return $rc != 0 ? $err : undef;
}

sub workers_sql
{
	my ($stream) = @_;
	my $sql = q{SELECT string_agg(application_name, ',' ORDER BY application_name)
		FROM pg_stat_activity WHERE backend_type = 'tributary stream worker'};
	return $sql unless defined $stream;
	my $name = sql_literal("tributary: $stream");
	return "$sql AND (application_name = $name OR starts_with(application_name, $name || ' #'))";
}

sub worker_names
{
	my ($node, $stream) = @_;
	return sql($node, workers_sql($stream));
}

sub check_ids
{
	my ($node, $table, $stream, $ids, $what) = @_;
	my $n = scalar @$ids;
	my $list = join(',', @$ids);
	ok(wait_for($node, "SELECT count(*) FROM $table", $n, 120), "$what: $n rows arrived");
	is( sql($node, qq{SELECT (SELECT count(*) - count(DISTINCT id) FROM $table) || '/' ||
		              (SELECT count(*) FROM unnest('{$list}'::bigint[]) w(id)
		               WHERE id NOT IN (SELECT id FROM $table)) || '/' ||
		              (SELECT count(*) FROM $table WHERE id <> ALL ('{$list}'::bigint[])) || '/' ||
		              (SELECT count(*) FROM tributary.dead_letters WHERE stream = }
		  . sql_literal($stream) . ')'),
		'0/0/0/0', "$what: none twice, none missing, none extra, no dead letter");
	return;
}

sub check_entry_ids
{
	my ($node, $table, $column, $stream, $ids, $what) = @_;
	my $n = scalar @$ids;
	# (entry ids, digits and one dash, need no quoting in an array literal)
	my $list = join(',', @$ids);
	ok(wait_for($node, "SELECT count(*) FROM $table", $n, 120), "$what: $n rows arrived");
	is( sql($node, qq{WITH want AS (SELECT unnest('{$list}'::text[]) AS id)
		SELECT (SELECT count(*) - count(DISTINCT $column) FROM $table) || '/' ||
		       (SELECT count(*) FROM want w
		        WHERE NOT EXISTS (SELECT FROM $table t WHERE t.$column = w.id)) || '/' ||
		       (SELECT count(*) FROM $table t
		        WHERE t.$column IS NULL OR NOT EXISTS (SELECT FROM want w WHERE w.id = t.$column)) || '/' ||
		       (SELECT count(*) FROM tributary.dead_letters WHERE stream = }
		  . sql_literal($stream) . ')'),
		'0/0/0/0', "$what: none twice, none missing, none extra, no dead letter");
	return;
}

# First pid (lowest) of the processes matching $where in pg_stat_activity, or undef.
sub _pid_where
{
	my ($node, $where) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE $where ORDER BY pid");
	my @pids = grep { length } split /\n/, $out;
	diag("more than one process matches $where: @pids") if @pids > 1;
	return @pids ? $pids[0] : undef;
}

sub worker_pid
{
	my ($node, $stream) = @_;
	return _pid_where($node,
		    "backend_type = 'tributary stream worker' AND application_name = "
		  . sql_literal("tributary: $stream"));
}

sub launcher_pid
{
	my ($node) = @_;
	return _pid_where($node, "backend_type = 'tributary launcher'");
}

1;
