# Kafka streams against the local broker (tools/tributary-kafka-mock), produced to with
# kcat: JSON, CSV, text and bytes topics over 4 partitions; malformed messages become
# dead letters with topic, partition and offset while the stream goes on; and exactly-
# once into PostgreSQL across kill -9 of the worker, an immediate shutdown, and a broker
# outage, checked message by message: every id produced is stored once, none is missing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(
	brokers => 1,
	topics => { orders => 4, lines => 4, blobs => 4, csv => 4 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('kafka', conf => "restart_after_crash = on\nlog_min_messages = info");

# Every COPY of orders sleeps 50 ms, so a batch of 50 messages takes at least that long:
# slow enough to crash the worker in the middle of the stream, fast enough for a test.
$node->safe_psql('postgres', qq{
	CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric);
	CREATE FUNCTION orders_slow() RETURNS trigger LANGUAGE plpgsql AS
	  \$\$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END \$\$;
	CREATE TRIGGER orders_slow AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION orders_slow();
	SELECT tributary.create_stream('orders', 'orders', 'kafka',
		'{"brokers": "$bs", "topic": "orders", "batch_size": 50, "batch_ms": 20}');
});

# Produce ids [from, to] round-robin over the 4 partitions; every 97th is malformed.
my %bad;
sub produce_orders
{
	my ($from, $to) = @_;
	kcat_produce_dealt(
		$bs, 'orders', 4,
		[ $from .. $to ],
		sub {
			my ($id) = @_;
			return qq({"id": $id, "customer": "c@{[ $id % 13 ]}", "amount": $id.25})
			  if $id % 97 != 0;
			$bad{$id} = 1;
			return qq({"id": $id, "customer": broken});
		});
}

# Every good id in [1, $upto] stored exactly once, and nothing else.
sub check_exactly_once
{
	my ($upto, $what) = @_;
	my $want = $upto - scalar(grep { $_ <= $upto } keys %bad);
	ok( wait_for($node, "SELECT count(*) FROM orders", $want, 120),
		"$what: all $want good messages arrived");
	my ($dups, $missing, $extra) = split /\|/, $node->safe_psql('postgres', qq{
		WITH want AS (SELECT g AS id FROM generate_series(1, $upto) g WHERE g % 97 <> 0)
		SELECT (SELECT count(*) - count(DISTINCT id) FROM orders),
		       (SELECT count(*) FROM want WHERE id NOT IN (SELECT id FROM orders)),
		       (SELECT count(*) FROM orders WHERE id NOT IN (SELECT id FROM want))});
	is($dups, 0, "$what: no message stored twice");
	is($missing, 0, "$what: no message missing");
	is($extra, 0, "$what: nothing stored that was not produced");
	is( $node->safe_psql('postgres', q{
			SELECT count(*) - count(DISTINCT (source_stream, source_partition, source_position))
			FROM tributary.dead_letters WHERE stream = 'orders'}),
		0, "$what: no dead letter twice");
	is( $node->safe_psql('postgres', q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'orders'}),
		scalar(grep { $_ <= $upto } keys %bad), "$what: every malformed message is a dead letter");
}

produce_orders(1, 4000);
ok(wait_for($node, "SELECT count(*) > 0 FROM orders", 't', 60), 'the worker consumes');

# malformed messages in the middle: dead letters with their position, the stream goes on
ok( wait_for(
		$node,
		q{SELECT count(*) > 0 FROM tributary.dead_letters WHERE stream = 'orders'}, 't', 60),
	'malformed messages become dead letters');
ok( wait_for(
		$node, q{
		SELECT source_stream || '/' || source_partition || '/' || sqlstate || '/' || source_position
		FROM tributary.dead_letters WHERE stream = 'orders'
		  AND convert_from(payload, 'UTF8') = '{"id": 97, "customer": broken}'},
		'orders/1/22P02/24', 60),
	'a dead letter carries topic, partition, offset and the SQLSTATE (id 97 is offset 24 of partition 1)');

# kill -9 of the worker mid-stream
ok(wait_for($node, "SELECT count(*) BETWEEN 200 AND 3500 FROM orders", 't', 60), 'mid-stream');
my $pid = worker_pid($node, 'orders');
kill 'KILL', $pid;
check_exactly_once(4000, 'after kill -9 of the worker');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition)
		FROM tributary.kafka_offsets WHERE stream = 'orders' AND topic = 'orders'}),
	'0:1000,1:1000,2:1000,3:1000', 'stored offsets are the end of every partition');

# immediate shutdown mid-stream
produce_orders(4001, 8000);
ok(wait_for($node, "SELECT count(*) > 4200 FROM orders", 't', 60), 'consuming the second half');
$node->stop('immediate');
$node->start;
check_exactly_once(8000, 'after an immediate shutdown and restart');

# broker outage: the worker reports it, keeps running, and resumes when the broker is back
produce_orders(8001, 9000);
ok($kafka->control('down 1'), 'the broker goes down');
ok( wait_for(
		$node,
		q{SELECT last_error IS NOT NULL FROM tributary.streams WHERE name = 'orders'}, 't', 60),
	'the outage is reported in last_error');
like(
	$node->safe_psql('postgres', q{SELECT state || ': ' || last_error FROM tributary.stream_stats
	                               WHERE stream = 'orders' AND partition IS NULL}),
	qr/^running: \S/, 'stream_stats shows the stream running, with the error');
ok(defined worker_pid($node, 'orders'), 'the worker keeps running while the broker is down');
ok($kafka->control('up 1'), 'the broker is back');
produce_orders(9001, 10000);
check_exactly_once(10000, 'across a broker outage');
ok( wait_for(
		$node,
		q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'orders'}, 't', 60),
	'last_error is cleared once batches commit again');

# alter_stream changes batch_size on the running stream
$node->safe_psql('postgres', q{SELECT tributary.alter_stream('orders', '{"batch_size": 7}')});
ok( wait_for(
		$node,
		q{SELECT s.worker_config_version = c.config_version
		  FROM tributary.stream_stats s JOIN tributary.streams c ON c.name = s.stream
		  WHERE s.stream = 'orders' AND s.partition IS NULL}),
	'the running worker reloads with the new batch_size');
ok($node->wait_for_log(qr/stream "orders" worker #1 keeps its consumer/),
	'batch_size alone changed: the worker keeps its consumer (no rebalance)');
my $batches_before = $node->safe_psql('postgres', q{SELECT batches FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NULL});
produce_orders(10001, 10070);
check_exactly_once(10070, 'after alter_stream');
my $batches = $node->safe_psql('postgres', q{SELECT batches FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NULL}) - $batches_before;
cmp_ok($batches, '>=', 10, "70 messages took at least 10 batches of at most 7 ($batches)");

# per-partition statistics: position, high watermark and lag of each partition (ids are
# spread id % 4, so partitions 1 and 2 hold 2518 messages of ids 1..10070, 0 and 3 hold 2517)
ok( wait_for(
		$node, q{
		SELECT string_agg(concat_ws(':', topic, partition, current_offset, high_watermark, lag), ','
		                  ORDER BY partition)
		FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NOT NULL},
		'orders:0:2517:2517:0,orders:1:2518:2518:0,orders:2:2518:2518:0,orders:3:2517:2517:0', 60),
	'stream_stats: one row per partition with its offset, high watermark and zero lag');
is( $node->safe_psql('postgres', q{
		SELECT (SELECT messages FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NULL)
		     = (SELECT sum(messages) FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NOT NULL)
		   AND (SELECT lag FROM tributary.stream_stats WHERE stream = 'orders' AND partition IS NULL) = 0}),
	't', 'stream_stats: the stream row sums its partitions');

# static partitions: a second stream reads only partitions 0 and 2 of the same topic, with
# no consumer-group rebalancing (how several servers split a topic and keep exactly-once)
$node->safe_psql('postgres', qq{
	CREATE TABLE orders_static (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric);
	SELECT tributary.create_stream('orders_static', 'orders_static', 'kafka',
		'{"brokers": "$bs", "topic": "orders", "partitions": [0, 2], "batch_size": 1000}');
});
my $static_want = $node->safe_psql('postgres',
	'SELECT count(*) FROM generate_series(1, 10070) g WHERE g % 97 <> 0 AND g % 4 IN (0, 2)');
ok(wait_for($node, 'SELECT count(*) FROM orders_static', $static_want, 60),
	"static partitions: the good messages of partitions 0 and 2 arrive ($static_want)");
is( $node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE id % 4 NOT IN (0, 2)) || '/' || (count(*) - count(DISTINCT id))
		FROM orders_static}),
	'0/0', 'static partitions: nothing from other partitions, nothing twice');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(partition || ':' || next_offset, ',' ORDER BY partition)
		FROM tributary.kafka_offsets WHERE stream = 'orders_static'}),
	'0:2517,2:2518', 'static partitions: offsets only for the assigned partitions');

# csv, text and bytes topics, 4 partitions each
$node->safe_psql('postgres', qq{
	CREATE TABLE csv_rows (id int PRIMARY KEY, name text, score float8);
	CREATE TABLE lines (line text);
	CREATE TABLE blobs (b bytea);
	SELECT tributary.create_stream('csv', 'csv_rows', 'kafka',
		'{"brokers": "$bs", "topic": "csv", "format": "csv", "columns": ["id", "name", "score"]}');
	SELECT tributary.create_stream('lines', 'lines', 'kafka',
		'{"brokers": "$bs", "topic": "lines", "format": "text"}');
	SELECT tributary.create_stream('blobs', 'blobs', 'kafka',
		'{"brokers": "$bs", "topic": "blobs", "format": "bytes"}');
});
for my $p (0 .. 3)
{
	kcat_produce($bs, 'csv', [ map { my $id = $p * 100 + $_; qq($id,"name, $id",$id.5) } 1 .. 50 ],
		partition => $p);
	kcat_produce($bs, 'lines', [ map { "line $p/$_ with\ttab and \\ backslash" } 1 .. 50 ], partition => $p);
	# (byte 0x1e is kcat's message separator here, so it is left out of the second byte)
	kcat_produce($bs, 'blobs', [ map { pack('C*', $p, $_, 0, 255, 10) } 1 .. 29, 31 .. 51 ],
		partition => $p);
}
kcat_produce($bs, 'csv', [ qq(999,"unterminated), 'x,y,z' ], partition => 2);
ok(wait_for($node, 'SELECT count(*) FROM csv_rows', '200', 60), 'csv: 200 rows over 4 partitions');
is($node->safe_psql('postgres', q{SELECT name || '|' || score FROM csv_rows WHERE id = 301}),
	'name, 301|301.5', 'csv: quoted fields and numbers');
ok( wait_for(
		$node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'csv' AND source_partition = '2'}, '2', 60),
	'csv: bad records are dead letters in their partition');
ok(wait_for($node, 'SELECT count(*) FROM lines', '200', 60), 'text: 200 lines');
is($node->safe_psql('postgres', q{SELECT count(*) FROM lines WHERE line = E'line 3/7 with\ttab and \\\\ backslash'}),
	'1', 'text: tabs and backslashes arrive unchanged');
ok(wait_for($node, 'SELECT count(*) FROM blobs', '200', 60), 'bytes: 200 payloads');
is($node->safe_psql('postgres', q{SELECT count(*) FROM blobs WHERE b = '\x030700ff0a'::bytea}),
	'1', 'bytes: NUL and 0xff bytes arrive unchanged');

# metadata columns: key, topic, partition, offset, timestamp and headers; a dead letter
# keeps them, and a replay puts them back
ok($kafka->control('topic keyed 2'), 'topic keyed created');
$node->safe_psql('postgres', qq{
	CREATE TABLE keyed (id int, k text, t text, p int, o bigint, ts timestamptz, h jsonb,
		v int CONSTRAINT v_positive CHECK (v > 0));
	SELECT tributary.create_stream('keyed', 'keyed', 'kafka',
		'{"brokers": "$bs", "topic": "keyed", "metadata": {"key": "k", "topic": "t",
		  "partition": "p", "offset": "o", "timestamp": "ts", "headers": "h"}}');
});
kcat_produce(
	$bs, 'keyed',
	[
		[ 'key-1', '{"id": 1, "v": 1, "k": "from the payload"}' ],
		[ undef, '{"id": 2, "v": 2}' ],
		[ 'key-3', '{"id": 3, "v": -3}' ]
	],
	keys => 1,
	partition => 1,
	headers => [ source => 'test', trace => 'abc' ]);
ok(wait_for($node, 'SELECT count(*) FROM keyed', '2', 60), 'metadata: two rows land');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(concat_ws('|', id, coalesce(k, 'NULL'), t, p, o, h::text,
		                            abs(extract(epoch FROM now() - ts)) < 600), E'\n' ORDER BY id)
		FROM keyed}),
	qq(1|key-1|keyed|1|0|{"trace": "abc", "source": "test"}|t\n)
	  . qq(2|NULL|keyed|1|1|{"trace": "abc", "source": "test"}|t),
	'metadata: key (NULL when absent), topic, partition, offset, headers and a recent timestamp; the payload cannot override them');
ok( wait_for(
		$node, q{
		SELECT convert_from(message_key, 'UTF8') || '|' || headers::text || '|' || (message_time IS NOT NULL)
		FROM tributary.dead_letters WHERE stream = 'keyed'},
		'key-3|{"trace": "abc", "source": "test"}|true', 60),
	'metadata: the dead letter keeps key, headers and timestamp');
$node->safe_psql('postgres', 'ALTER TABLE keyed DROP CONSTRAINT v_positive');
is($node->safe_psql('postgres', q{SELECT accepted FROM tributary.replay_dead_letters('keyed')}),
	'1', 'metadata: the dead letter replays');
is( $node->safe_psql('postgres', q{
		SELECT concat_ws('|', k, t, p, o, h::text, (SELECT ts FROM keyed WHERE id = 1) - ts < interval '1 minute')
		FROM keyed WHERE id = 3}),
	'key-3|keyed|1|2|{"trace": "abc", "source": "test"}|t',
	'metadata: the replayed row has its original metadata');

$node->stop;
$kafka->stop;
done_testing();
