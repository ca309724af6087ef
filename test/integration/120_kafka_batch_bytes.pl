# A Kafka worker's batch is bounded in bytes as well as in messages: it holds at most
# tributary.max_message_size bytes of messages (or one message), so a batch of large
# messages cannot hold batch_size (10000 by default) of them in memory.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { big => 1 });
my $bs = $kafka->bootstrap;
my $node = tributary_node('batch_bytes', conf => "tributary.max_message_size = '1kB'");

sql($node, q{CREATE TABLE big_t (id bigint PRIMARY KEY, pad text)});
sql($node, qq{SELECT tributary.create_stream('big', 'big_t', 'kafka',
	'{"brokers": "$bs", "topic": "big", "batch_ms": 2000}', enabled => false)});

# ten messages of about 600 bytes, all in the topic before the worker starts
kcat_produce($bs, 'big', [ map { sprintf('{"id": %d, "pad": "%s"}', $_, 'x' x 580) } 1 .. 10 ]);
sql($node, q{SELECT tributary.start('big')});
ok(wait_for($node, 'SELECT count(*) FROM big_t', '10', 60), 'all ten messages landed');
# 600 + 600 bytes reach the 1 kB bound: two messages a batch, five batches (without the
# bound, all ten are one batch: batch_size is 10000 and batch_ms 2 s)
cmp_ok(sql($node, q{SELECT batches FROM tributary.stream_stats WHERE stream = 'big' AND partition IS NULL}),
	'>=', 5, 'no batch held more than tributary.max_message_size bytes of messages');
is(sql($node, q{SELECT count(*) FROM tributary.dead_letters}), '0', 'and none was a dead letter');

$node->stop;
$kafka->stop;
done_testing();
