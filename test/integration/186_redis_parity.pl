# One stream, three transports: the same messages through a Kafka stream (the local broker,
# one partition), a Redis stream (each entry's "payload" field, format json) and
# tributary.ingest on a local stream give
#
#  - identical tables;
#  - identical closed quality windows (tributary.set_quality): tributary.quality_windows and
#    quality_columns with every column but those that depend on the transport's timing
#    (stream, closed_at, lag_p50/p90/p99, freshness, revision, and state, compared through
#    tributary.quality_metrics instead);
#  - identical snapshots (tributary.set_snapshot): the same record for every key;
#  - identical dead letters (payload, error, SQLSTATE, detail) for malformed messages.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;
use TributaryRedis;

my $kafka = kafka_mock_start(brokers => 1, topics => { parity => 1, parbad => 1 });
my $bs = $kafka->bootstrap;
my $redis = redis_start();
my $url = $redis->url;
my $node = tributary_node('parity', conf => 'log_min_messages = info');

# The message of reading $i (as 150_quality.pl): event times 50 ms apart (3000 messages span
# 2.5 minutes), every 37th a duplicate id (the key's second record), every 11th without a
# device, every 13th without a value.
sub reading
{
	my ($i) = @_;
	my $ms = 50 * $i;
	my $at = sprintf('2026-03-01T10:%02d:%02d.%03dZ', int($ms / 60000), int($ms / 1000) % 60, $ms % 1000);
	my $id = $i % 37 == 0 ? $i - 1 : $i;
	my $device = $i % 11 == 0 ? 'null' : '"dev-' . ($i % 7) . '"';
	my $value = $i % 13 == 0 ? 'null' : ($i * 7919 % 1000) / 10;
	return qq({"id": $id, "at": "$at", "device": $device, "value": $value});
}
my @msgs = map { reading($_) } 1 .. 3000;

sql($node, qq{
	CREATE TABLE k_rows (id int, at timestamptz, device text, value float8);
	CREATE TABLE r_rows (LIKE k_rows);
	CREATE TABLE l_rows (LIKE k_rows);
	SELECT tributary.create_stream('pk', 'k_rows', 'kafka',
		'{"brokers": "$bs", "topic": "parity", "batch_size": 100, "batch_ms": 20}',
		key => 'id', event_time => 'at');
	SELECT tributary.create_stream('pr', 'r_rows', 'redis',
		'{"url": "$url", "stream": "parity", "fields": "payload", "format": "json", "batch_size": 100, "batch_ms": 20}',
		key => 'id', event_time => 'at');
	SELECT tributary.create_stream('pl', 'l_rows', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
});
for my $s (qw(pk pr pl))
{
	sql($node, qq{
		SELECT tributary.set_quality('$s', '1 minute', columns => '{device,value}');
		SELECT tributary.set_snapshot('$s');
	});
}

kcat_produce($bs, 'parity', \@msgs, partition => 0);
$redis->xadd_bulk('parity', [ map { [ payload => $_ ] } @msgs ]);
for (my $lo = 0; $lo < @msgs; $lo += 100)
{
	sql($node, "SELECT tributary.ingest('pl', ARRAY["
		  . join(',', map { sql_literal($_) } @msgs[ $lo .. $lo + 99 ]) . '])');
}
for my $t (qw(k_rows r_rows l_rows))
{
	ok(wait_for($node, "SELECT count(*) FROM $t", '3000', 60), "$t: 3000 rows");
}

# ---------------------------------------------------------------------------------------
# Tables.

is( sql($node, q{SELECT (SELECT count(*) FROM (TABLE k_rows EXCEPT ALL TABLE l_rows) d) || '/' ||
                        (SELECT count(*) FROM (TABLE l_rows EXCEPT ALL TABLE k_rows) d) || '/' ||
                        (SELECT count(*) FROM (TABLE r_rows EXCEPT ALL TABLE l_rows) d) || '/' ||
                        (SELECT count(*) FROM (TABLE l_rows EXCEPT ALL TABLE r_rows) d)}),
	'0/0/0/0', 'tables: kafka, redis and ingest stored the same rows');

# ---------------------------------------------------------------------------------------
# Closed quality windows: 10:00 and 10:01 (the newest event is 10:02:30; the 10:02 window
# closes later, on the wall clock, and is not compared).

for my $s (qw(pk pr pl))
{
	ok( wait_for(
			$node, qq{SELECT string_agg(rows::text, ',' ORDER BY window_start) FROM tributary.quality_windows
			          WHERE stream = '$s' AND window_start < '2026-03-01 10:02+00'}, '1199,1200', 60),
		"quality $s: windows 10:00 (1199 rows) and 10:01 (1200 rows) closed");
}
my $wcols = 'window_start, window_end, rows, duplicates, completeness, uniqueness, validity, timeliness, '
  . 'consistency, outliers, quality_score, newest_event, dead_letters, late_rows';
my $ccols = 'window_start, window_end, column_name, rows, non_null, completeness, distinct_count, mean, '
  . 'stddev, min, max, p50, p90, p99, outliers, outlier_rate';
my $closed = q{window_start < '2026-03-01 10:02+00'};
for my $s (qw(pk pr))
{
	is( sql($node, qq{
			WITH a AS (SELECT $wcols, tributary.quality_metrics(state)::text AS metrics FROM tributary.quality_windows
			           WHERE stream = '$s' AND $closed),
			     b AS (SELECT $wcols, tributary.quality_metrics(state)::text AS metrics FROM tributary.quality_windows
			           WHERE stream = 'pl' AND $closed)
			SELECT (SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b) d) || '/' ||
			       (SELECT count(*) FROM (TABLE b EXCEPT ALL TABLE a) d)}),
		'0/0', "quality $s: quality_windows equal the local stream's (and their states' metrics)");
	is( sql($node, qq{
			WITH a AS (SELECT $ccols FROM tributary.quality_columns WHERE stream = '$s' AND $closed),
			     b AS (SELECT $ccols FROM tributary.quality_columns WHERE stream = 'pl' AND $closed)
			SELECT count(*) || '/' || (SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b) d) || '/' ||
			       (SELECT count(*) FROM (TABLE b EXCEPT ALL TABLE a) d) FROM a}),
		'4/0/0', "quality $s: quality_columns equal the local stream's (2 windows x 2 columns)");
}
is( sql($node, qq{SELECT string_agg(DISTINCT concat_ws('|', dead_letters, late_rows, validity, timeliness), ',')
                  FROM tributary.quality_windows WHERE $closed}),
	'0|0|1|1', 'quality: no dead letter and no late row in any of them (what the comparison covers)');

# ---------------------------------------------------------------------------------------
# Snapshots: one record per id (2919 ids: every 37th message repeats the id before it).

for my $s (qw(pk pr))
{
	is( sql($node, qq{
			WITH a AS (SELECT key, record FROM tributary.snapshot('$s')),
			     b AS (SELECT key, record FROM tributary.snapshot('pl'))
			SELECT count(*) || '/' || (SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b) d) || '/' ||
			       (SELECT count(*) FROM (TABLE b EXCEPT ALL TABLE a) d) FROM a}),
		'2919/0/0', "snapshot $s: the same record per key as the local stream's");
}
is( sql($node, q{SELECT (record ->> 'at')::timestamptz = '2026-03-01 10:00:01.85+00' FROM tributary.snapshot('pr', '36')}),
	't', 'snapshot: a repeated id holds its second record');

# ---------------------------------------------------------------------------------------
# Dead letters: malformed JSON, not an object, a value the table refuses.

my @bad = map {
	$_ == 4 ? '{"id": 4, "v": broken}'
	  : $_ == 9 ? '[1, 2]'
	  : $_ == 13 ? '{"id": 13, "v": -1}'
	  : qq({"id": $_, "v": $_})
} 1 .. 20;
sql($node, qq{
	CREATE TABLE kb (id int, v int CONSTRAINT v_positive CHECK (v > 0));
	CREATE TABLE rb (id int, v int CONSTRAINT v_positive CHECK (v > 0));
	CREATE TABLE lb (id int, v int CONSTRAINT v_positive CHECK (v > 0));
	SELECT tributary.create_stream('kb', 'kb', 'kafka', '{"brokers": "$bs", "topic": "parbad"}');
	SELECT tributary.create_stream('rb', 'rb', 'redis', '{"url": "$url", "stream": "parbad", "fields": "payload"}');
	SELECT tributary.create_stream('lb', 'lb', 'local', '{}');
});
kcat_produce($bs, 'parbad', \@bad, partition => 0);
$redis->xadd_bulk('parbad', [ map { [ payload => $_ ] } @bad ]);
is(sql($node, q{SELECT accepted || '/' || dead_lettered FROM tributary.ingest('lb', ARRAY[}
		  . join(',', map { sql_literal($_) } @bad) . '])'),
	'17/3', 'dead letters: ingest stores 17 and dead-letters 3');
ok(wait_for($node, q{SELECT (SELECT count(*) FROM kb) || '/' || (SELECT count(*) FROM rb)}, '17/17', 60),
	'dead letters: kafka and redis store 17 rows each');
ok( wait_for(
		$node, q{SELECT string_agg(stream || ':' || count, ',' ORDER BY stream) FROM
		         (SELECT stream, count(*) FROM tributary.dead_letters WHERE stream IN ('kb', 'rb') GROUP BY stream) c},
		'kb:3,rb:3', 60),
	'dead letters: kafka and redis dead-letter 3 each');
for my $s (qw(kb rb))
{
	is( sql($node, qq{
			WITH a AS (SELECT payload, replace(error, 'relation "$s"', 'relation'), sqlstate, detail
			           FROM tributary.dead_letters WHERE stream = '$s'),
			     b AS (SELECT payload, replace(error, 'relation "lb"', 'relation'), sqlstate, detail
			           FROM tributary.dead_letters WHERE stream = 'lb')
			SELECT (SELECT count(*) FROM (TABLE a EXCEPT ALL TABLE b) d) || '/' ||
			       (SELECT count(*) FROM (TABLE b EXCEPT ALL TABLE a) d)}),
		'0/0', "dead letters $s: the same payloads, errors (but the table's name), SQLSTATEs and details as ingest's");
}
is( sql($node, q{SELECT (SELECT count(*) FROM (TABLE kb EXCEPT ALL TABLE lb) d) + (SELECT count(*) FROM (TABLE lb EXCEPT ALL TABLE kb) d)
                      + (SELECT count(*) FROM (TABLE rb EXCEPT ALL TABLE lb) d) + (SELECT count(*) FROM (TABLE lb EXCEPT ALL TABLE rb) d)}),
	'0', 'dead letters: the three tables hold the same rows');

$node->stop;
$kafka->stop;
ok($redis->stop, 'redis-server stops cleanly');
done_testing();
