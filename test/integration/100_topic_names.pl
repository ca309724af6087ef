# Full topic names in shared memory: two Kafka topics of 100 characters that share their
# first 80 are two partition rows in tributary.stream_stats, each with its whole name and
# its own counts. Before 0.3.0 the partition slots kept 63 bytes of the name, so both
# topics' partitions 0 were one row, counting the messages of both.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $prefix = 'long.' . ('p' x 75);    # 80 characters
my $topic_a = $prefix . ('a' x 20);
my $topic_b = $prefix . ('b' x 20);
is(length($topic_a), 100, 'the topic names are 100 characters');

my $kafka = kafka_mock_start(brokers => 1, topics => { $topic_a => 1, $topic_b => 1 });
my $bs = $kafka->bootstrap;

# 3 messages on one topic, 5 on the other: counts that tell the topics apart
kcat_produce($bs, $topic_a, [ map { qq({"id": $_}) } 1 .. 3 ], partition => 0);
kcat_produce($bs, $topic_b, [ map { qq({"id": $_}) } 101 .. 105 ], partition => 0);

my $node = tributary_node('topic_names');
$node->safe_psql('postgres', qq{
	CREATE TABLE events (id bigint PRIMARY KEY);
	SELECT tributary.create_stream('long_topics', 'events', 'kafka',
		jsonb_build_object('brokers', '$bs', 'topic', jsonb_build_array('$topic_a', '$topic_b'),
		                   'start', 'earliest', 'batch_ms', 20));
});

ok(wait_for($node, 'SELECT count(*) FROM events', 8, 60), 'the stream reads both topics');
ok( wait_for(
		$node, q{SELECT coalesce(sum(messages), 0) FROM tributary.stream_stats
		         WHERE stream = 'long_topics' AND partition IS NOT NULL}, 8, 60),
	'the partition rows count every message');

is( $node->safe_psql('postgres', q{
		SELECT string_agg(topic || ' ' || partition || ' ' || messages || ' ' || rows || ' ' || current_offset,
		                  E'\n' ORDER BY topic)
		FROM tributary.stream_stats WHERE stream = 'long_topics' AND partition IS NOT NULL}),
	"$topic_a 0 3 3 3\n$topic_b 0 5 5 5",
	'two partition rows, each with its full topic name, its own counts and position');

is( $node->safe_psql('postgres', q{
		SELECT messages FROM tributary.stream_stats WHERE stream = 'long_topics' AND partition IS NULL}),
	8, 'the stream row counts both topics');

$node->stop;
$kafka->stop;
done_testing();
