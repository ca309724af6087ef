# Kafka positions in tributary.offsets and tributary.dead_letters across the update to
# 0.3.0, which makes them source-neutral text. This library also serves a database still at
# 0.2.0: a Kafka stream there stores its offsets and dead letters in 0.2.0's integer
# columns, and goes on across ALTER EXTENSION UPDATE from the carried-over positions, with
# nothing stored twice and nothing missing. A malformed stored position stops the stream
# with the reason, instead of being read as some offset.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { pos => 2 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('positions', create_extension => 0);
sql($node, q{CREATE EXTENSION tributary VERSION '0.2.0'});
sql($node, qq{
	CREATE TABLE pos_t (id bigint PRIMARY KEY, p int, o bigint);
	SELECT tributary.create_stream('pos', 'pos_t', 'kafka',
		'{"brokers": "$bs", "topic": "pos", "batch_ms": 50,
		  "metadata": {"partition": "p", "offset": "o"}}');
});

# Ids dealt over the 2 partitions (id % 2), at offset (id + 1) / 2 - 1 of their partition;
# id 50 is malformed.
sub produce
{
	my ($from, $to) = @_;
	kcat_produce_dealt($bs, 'pos', 2, [ $from .. $to ],
		sub { $_[0] == 50 ? '{"id": "fifty"}' : qq({"id": $_[0]}) });
}

# Every good id up to $upto stored once, with its partition and offset.
sub stored_once
{
	my ($upto, $what) = @_;
	my $want = $upto - 1;
	ok(wait_for($node, 'SELECT count(*) FROM pos_t', $want, 60), "$what: $want rows arrived");
	is( sql($node, qq{
			SELECT count(DISTINCT id) || '/' || sum(id) || '/'
			       || count(*) FILTER (WHERE p = id % 2 AND o = (id + 1) / 2 - 1)
			FROM pos_t}),
		"$want/" . ($upto * ($upto + 1) / 2 - 50) . "/$want",
		"$what: every good id once, with its partition and offset");
}

# --- A database at 0.2.0 with this library: 0.2.0's integer columns.
produce(1, 100);
stored_once(100, '0.2.0');
is( sql($node, q{
		SELECT string_agg(partition || ':' || next_offset || ':' || pg_typeof(next_offset), ','
		                  ORDER BY partition)
		FROM tributary.offsets WHERE stream = 'pos' AND topic = 'pos'}),
	'0:50:bigint,1:50:bigint', '0.2.0: the next offsets are stored in its bigint column');
is( sql($node, q{
		SELECT topic || '/' || partition || '/' || source_offset || '/' || sqlstate
		FROM tributary.dead_letters WHERE stream = 'pos'}),
	'pos/0/24/22P02', '0.2.0: the dead letter is stored with its partition and offset');

# --- The update, while the worker runs; it goes on from the carried-over offsets.
sql($node, q{ALTER EXTENSION tributary UPDATE});
produce(101, 200);
stored_once(200, 'after the update');
is( sql($node, q{
		SELECT string_agg(source_partition || ':' || position, ',' ORDER BY source_partition)
		FROM tributary.offsets WHERE stream = 'pos' AND source_stream = 'pos'}),
	'0:100,1:100', 'after the update: the next offsets are stored as text');
is( sql($node, q{
		SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition)
		FROM tributary.kafka_offsets WHERE stream = 'pos'}),
	'0:100,1:100', 'after the update: tributary.kafka_offsets shows them as numbers');
is( sql($node, q{
		SELECT source_stream || '/' || source_partition || '/' || source_position
		FROM tributary.dead_letters WHERE stream = 'pos'}),
	'pos/0/24', 'after the update: the dead letter keeps its position');

# --- A malformed stored position: the stream stops with the reason, consuming nothing.
sql($node, q{SELECT tributary.stop('pos')});
ok(wait_for($node, workers_sql('pos'), '', 60), 'the worker is gone');
sql($node, q{UPDATE tributary.offsets SET position = '7e1' WHERE stream = 'pos' AND source_partition = '1'});
produce(201, 210);
sql($node, q{SELECT tributary.start('pos')});
ok( wait_for(
		$node,
		q{SELECT last_error LIKE '%has a malformed Kafka position in tributary.offsets: partition "1", position "7e1" of topic "pos"'
		  FROM tributary.streams WHERE name = 'pos'}),
	'a malformed stored position: last_error names it');
is(sql($node, 'SELECT count(*) FROM pos_t'), '199', 'a malformed stored position: nothing is consumed');

sql($node, q{SELECT tributary.stop('pos')});
ok(wait_for($node, workers_sql('pos'), '', 60), 'the worker is gone');
sql($node, q{UPDATE tributary.offsets SET position = '100' WHERE stream = 'pos' AND source_partition = '1'});
sql($node, q{SELECT tributary.start('pos')});
stored_once(210, 'corrected');

$node->stop;
$kafka->stop;
done_testing();
