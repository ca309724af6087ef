# The local ingest path from real client sessions: a mixed batch lands every good row and
# dead-letters every bad one with its error; replay_dead_letters re-inserts them once the
# target is fixed; concurrent sessions add up exactly; committed rows and dead letters
# survive an immediate shutdown while a rolled-back ingest leaves nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

my $node = tributary_node('ingest');

$node->safe_psql('postgres', q{
	CREATE TABLE readings (
		id      bigint PRIMARY KEY,
		sensor  text NOT NULL,
		value   float8 CHECK (value >= 0),
		at      timestamptz NOT NULL DEFAULT now()
	);
	SELECT tributary.create_stream('readings', 'readings', 'local', '{"format": "json"}',
		key => 'sensor', event_time => 'at');
});

# A batch of 1000 messages: every 10th breaks the CHECK, every 25th is not JSON,
# every 40th lacks the NOT NULL sensor. Ids are unique, so everything else must land.
my (@payloads, %bad);
for my $i (1 .. 1000)
{
	my $p;
	if ($i % 25 == 0) { $p = "{broken $i"; $bad{$i} = '22P02'; }
	elsif ($i % 10 == 0) { $p = qq({"id": $i, "sensor": "s$i", "value": -1}); $bad{$i} = '23514'; }
	elsif ($i % 40 == 0) { $p = qq({"id": $i, "value": 1}); $bad{$i} = '23502'; }
	else { $p = qq({"id": $i, "sensor": "s$i", "value": $i.5}); }
	push @payloads, $p;
}
my $array = 'ARRAY[' . join(',', map { sql_literal($_) } @payloads) . ']::text[]';
my $nbad = scalar keys %bad;

is($node->safe_psql('postgres', "SELECT accepted || '/' || dead_lettered FROM tributary.ingest('readings', $array)"),
	(1000 - $nbad) . "/$nbad", 'ingest reports accepted and dead-lettered messages');
is($node->safe_psql('postgres', 'SELECT count(*) FROM readings'), 1000 - $nbad, 'every good row landed');

my %want_bad = map { $_ => 1 } keys %bad;
my $stored_ids = $node->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM readings');
my @missing = grep { !$want_bad{$_} } grep { my $i = $_; $stored_ids !~ /(^|,)$i(,|$)/ } 1 .. 1000;
is(scalar @missing, 0, 'no good message is missing') or diag("missing: @missing");

my $dl = $node->safe_psql('postgres', q{
	SELECT sqlstate, count(*) FROM tributary.dead_letters WHERE stream = 'readings'
	GROUP BY sqlstate ORDER BY sqlstate});
my %count_by_state;
$count_by_state{$_}++ for values %bad;
is($dl, join("\n", map { "$_|$count_by_state{$_}" } sort keys %count_by_state),
	'each bad message is a dead letter with the SQLSTATE of its error');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM tributary.dead_letters
		WHERE stream = 'readings' AND sqlstate = '23514'
		  AND error LIKE '%violates check constraint "readings_value_check"%'}),
	$count_by_state{'23514'}, 'dead letters carry the error message');
is( $node->safe_psql('postgres', q{
		SELECT convert_from(payload, 'UTF8') FROM tributary.dead_letters
		WHERE stream = 'readings' AND sqlstate = '22P02' ORDER BY id LIMIT 1}),
	'{broken 25', 'dead letters keep the raw payload');

# concurrent sessions: pgbench runs 2 clients, 20 transactions each, 10 messages per ingest
$node->safe_psql('postgres', 'CREATE SEQUENCE concurrent_ids START 100000');
my $script = PostgreSQL::Test::Utils::tempdir() . '/ingest.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
SELECT tributary.ingest('readings', (SELECT array_agg(json_build_object(
	'id', nextval('concurrent_ids'), 'sensor', 'c' || :client_id, 'value', 1)::text)
	FROM generate_series(1, 10)));
});
$node->command_ok([ 'pgbench', '-n', '-c', '2', '-j', '2', '-t', '20', '-f', $script, 'postgres' ],
	'two concurrent clients ingest');
is($node->safe_psql('postgres', q{SELECT count(*) FROM readings WHERE sensor IN ('c0', 'c1')}),
	'400', 'batches from two sessions all land');

is( $node->safe_psql('postgres', q{
		SELECT messages || '/' || rows || '/' || dead_letters || '/' || batches
		FROM tributary.stream_stats WHERE stream = 'readings'}),
	"1400/" . (1400 - $nbad) . "/$nbad/41", 'stream_stats counts every committed message, row and batch');

# a rolled-back ingest leaves nothing: rows, dead letters, counters
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT tributary.ingest('readings', ARRAY['{"id": 5000, "sensor": "x"}', 'nope']);
	ROLLBACK;
});
is( $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM readings WHERE id = 5000) || '/' ||
		       (SELECT count(*) FROM tributary.dead_letters WHERE payload = 'nope') || '/' ||
		       (SELECT messages FROM tributary.stream_stats WHERE stream = 'readings')}),
	'0/0/1400', 'a rolled-back ingest leaves no row, no dead letter and no count');

# fix the target, replay: the CHECK failures land; the broken JSON stays, attempts 2
$node->safe_psql('postgres', q{ALTER TABLE readings DROP CONSTRAINT readings_value_check});
my $still = $count_by_state{'22P02'} + $count_by_state{'23502'};
is( $node->safe_psql('postgres', q{SELECT accepted || '/' || dead_lettered FROM tributary.replay_dead_letters('readings')}),
	"$count_by_state{'23514'}/$still", 'replay re-inserts what now fits and reports the rest');
is($node->safe_psql('postgres', 'SELECT count(*) FROM readings WHERE value = -1'),
	$count_by_state{'23514'}, 'replayed rows are in the target');
is( $node->safe_psql('postgres', q{
		SELECT count(*) || '/' || min(attempts) FROM tributary.dead_letters WHERE stream = 'readings'}),
	"$still/2", 'messages that still fail stay, with their attempts counted');

# committed work survives an immediate shutdown
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM readings');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM readings'), $before,
	'rows survive an immediate shutdown');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'readings'}),
	$still, 'dead letters survive an immediate shutdown');

$node->stop;
done_testing();
