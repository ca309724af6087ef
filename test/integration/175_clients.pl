# The client examples of docs/fanout.md, run as they are under test/clients/: psql
# (follow.psql), Python with psycopg 3 (follow.py) and Node.js with node-postgres
# (node/follow.js). Each hydrates, then follows an upsert, a delete, a record too large for
# NOTIFY and a new key; the Python and Node clients' final state must equal
# tributary.snapshot(), and psql must show the snapshot and then the notifications in seq order.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TributaryTest;

my $clients = File::Spec->catdir(dirname(File::Spec->rel2abs(__FILE__)), '..', 'clients');
my $node = tributary_node('clients');
my $timeout = $PostgreSQL::Test::Utils::timeout_default;
my $outdir = PostgreSQL::Test::Utils::tempdir('clients');
my $big = 'z' x 9000;

sql($node, q{
	CREATE TABLE orders (customer text, amount int, note text);
	SELECT tributary.create_stream('orders', 'orders', 'local', '{"format": "json"}', key => 'customer');
	SELECT tributary.set_snapshot('orders');
	SELECT tributary.set_fanout('orders');
	SELECT tributary.ingest('orders', ARRAY['{"customer": "ann", "amount": 1}',
		'{"customer": "bob", "amount": 2}', '{"customer": "cid", "amount": 3}']::jsonb[]);
});
# The four changes each client follows, one transaction each.
my @changes = (
	q{SELECT tributary.ingest('orders', '{"customer": "ann", "amount": 10}'::jsonb)},
	q{SELECT tributary.ingest('orders', ARRAY[NULL]::jsonb[], keys => ARRAY['bob'])},
	qq{SELECT tributary.ingest('orders', '{"customer": "cid", "amount": 30, "note": "$big"}'::jsonb)},
	q{SELECT tributary.ingest('orders', '{"customer": "dan", "amount": 4}'::jsonb)});

%ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port, PGDATABASE => 'postgres',
	PGUSER => sql($node, 'SELECT current_user'));

# Keys where a client's state ({key: record}) differs from the snapshot: "0" when none.
sub differs
{
	my ($keys) = @_;
	return sql($node, q{
		SELECT count(*) FROM tributary.snapshot('orders') s
		FULL JOIN jsonb_each(} . sql_literal(encode_json($keys)) . q{::jsonb) c(key, record) USING (key)
		WHERE s.key IS NULL OR c.key IS NULL OR c.record <> s.record});
}

# Run one client (argv) through the four changes; its decoded output lines.
sub follow_with
{
	my ($name, @cmd) = @_;
	my ($out, $err) = ("$outdir/$name.out", "$outdir/$name.err");
	# every client starts from ann, bob and cid
	sql($node, q{SELECT tributary.ingest('orders', '{"customer": "bob", "amount": 2}'::jsonb);
		SELECT tributary.ingest('orders', ARRAY[NULL]::jsonb[], keys => ARRAY['dan'])});
	my $h = IPC::Run::start([ @cmd, 'orders', scalar(@changes) ], '<', \undef, '>', $out, '2>', $err,
		IPC::Run::timeout($timeout));
	my $lines = sub { map { decode_json($_) } (-e $out ? slurp_file($out) : '') =~ /^(.*)\n/mg };
	my $deadline = time + $timeout;
	usleep(100_000) until (grep { $_->{event} eq 'hydrate' } $lines->()) || time > $deadline;
	my ($hyd) = grep { $_->{event} eq 'hydrate' } $lines->();
	$hyd //= { keys => 'none', seq => 0 };
	is("$hyd->{keys}", '3', "$name: hydrated 3 keys") or diag(slurp_file($err));
	my $seq0 = $hyd->{seq};
	sql($node, $_) for @changes;
	$h->finish;
	is($h->full_result(0), 0, "$name: exited 0 after the changes") or diag(slurp_file($err));
	my @ev = $lines->();
	is( join(' ', map { "$_->{event}:$_->{key}:" . ($_->{seq} - $seq0) } grep { $_->{key} } @ev),
		'upsert:ann:1 delete:bob:2 upsert:cid:3 upsert:dan:4', "$name: followed the four changes in order");
	my ($state) = grep { $_->{event} eq 'state' } @ev;
	is($state->{seq}, $seq0 + 4, "$name: at the stream's seq");
	is(differs($state->{keys}), '0', "$name: its state equals tributary.snapshot()");
	return;
}

follow_with('python', '/usr/bin/python3', "$clients/follow.py");
follow_with('node', 'node', "$clients/node/follow.js");

# psql: hydrate with follow.psql, then run the changes in the same session; psql prints the
# session's own notifications after each command.
my $changes_file = "$outdir/changes.sql";
open(my $fh, '>', $changes_file) or die "cannot write $changes_file: $!";
print $fh "$_;\n" for @changes;
print $fh "SELECT 'done';\n";
close $fh;
sql($node, q{SELECT tributary.ingest('orders', '{"customer": "bob", "amount": 2}'::jsonb);
	SELECT tributary.ingest('orders', ARRAY[NULL]::jsonb[], keys => ARRAY['dan'])});
my $seq0 = sql($node, q{SELECT tributary.snapshot_seq('orders')});
my $snapshot = sql($node, q{SELECT key || '|' || seq || '|' || record FROM tributary.snapshot('orders') ORDER BY key});
my ($out, $err) = ('', '');
IPC::Run::run([ 'psql', '-X', '-Atq', '-v', 'ON_ERROR_STOP=1', '-v', 'stream=orders',
		'-f', "$clients/follow.psql", '-f', $changes_file ], '<', \undef, '>', \$out, '2>', \$err)
  or diag($err);
like($out, qr/\A\Q$seq0\E\n\Q$snapshot\E\n/, 'psql: the seq, then the snapshot');
my @payloads = map { decode_json($_) } $out =~ /^Asynchronous notification "tributary\.orders" with payload "(.*)" received from server process/mg;
is( join(' ', map { "$_->{op}:$_->{key}:" . ($_->{seq} - $seq0) . ($_->{truncated} ? ':truncated' : '') } @payloads),
	'upsert:ann:1 delete:bob:2 upsert:cid:3:truncated upsert:dan:4', 'psql: the notifications, in seq order');

done_testing();
