# Stages after the insert (src/stage.h), watched through test/modules/tributary_test_stage,
# a stage preloaded after tributary that records every batch and row it is given into
# public.tributary_test_stage_seen and _batches, in the batch's transaction.
#
# For tributary.ingest (local source) and a Kafka stream: the stage sees exactly the rows
# that landed, as they landed (a column default, a BEFORE trigger that changes a value, a
# generated column), in message order, with the key and event time of the landed row and,
# for Kafka, the partition and offset of its message; dead-lettered messages (too large,
# malformed, a value its column refuses, a CHECK violation) are not among the rows and are
# counted under their reason; the stage runs as whoever commits the batch (never as the
# target's owner, never restricted). A stream not listed in tributary_test_stage.streams runs
# no stage. A stage that raises aborts the batch: ingest fails with the stage's error; a
# worker retries, and once the stage works again nothing is lost or stored twice. Loading
# the module outside shared_preload_libraries is refused.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { orders => 2 });
my $bs = $kafka->bootstrap;

# 4 kB: a message of 5000 bytes is too large, everything else fits.
my $node = tributary_node(
	'stages',
	test_stage => 1,
	conf => "tributary_test_stage.streams = 'readings,orders'\n"
	  . "tributary.max_message_size = '4kB'\nlog_min_messages = info");
test_stage_tables($node);

is(sql($node, q{SELECT vartype FROM pg_settings WHERE name = 'tributary_test_stage.fail'}),
	'bool', 'the test stage is preloaded (its GUC is defined, not a placeholder)');

my $big = 'x' x 5000;

# SQL: the recorded rows, and batches, of one stream.
sub seen { return 'tributary_test_stage_seen WHERE stream = ' . sql_literal($_[0]); }
sub batches { return 'tributary_test_stage_batches WHERE stream = ' . sql_literal($_[0]); }

# ---------------------------------------------------------------------------------------
# Kafka stream "orders": created first, so its worker consumes while the local part runs.
# The target belongs to bob; the worker inserts as bob (the trigger records it), while the
# stage runs as the worker's role, the extension's owner.

sql($node, q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	CREATE TABLE orders (
		id         int PRIMARY KEY,
		amount     int CHECK (amount >= 0),
		status     text DEFAULT 'new',
		total      int GENERATED ALWAYS AS (amount * 10) STORED,
		ts         timestamptz,
		k          text,
		touched_by text
	);
	CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		NEW.status := upper(NEW.status);
		NEW.touched_by := current_user;
		RETURN NEW;
	END $$;
	CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
	ALTER TABLE orders OWNER TO bob;
	ALTER FUNCTION orders_touch() OWNER TO bob;
	CREATE TABLE plain_orders (id int PRIMARY KEY, amount int CHECK (amount >= 0));
});
sql($node, qq{
	SELECT tributary.create_stream('orders', 'orders', 'kafka',
		'{"brokers": "$bs", "topic": "orders", "batch_size": 5, "batch_ms": 20,
		  "metadata": {"key": "k"}}',
		key => 'k', event_time => 'ts');
	SELECT tributary.create_stream('plain', 'plain_orders', 'kafka',
		'{"brokers": "$bs", "topic": "orders", "batch_size": 5, "batch_ms": 20}');
});

# Message $i (from 1) of partition $p has id $p * 100 + $i and offset $i - 1. Kinds by $i.
my %kafka_dead = (too_large => 0, malformed => 0, bad_value => 0, rejected => 0);
my @kafka_good;    # ids
my %kafka_status;  # id => the status it lands with: the default or the message's, upper-cased
sub order_message
{
	my ($p, $i) = @_;
	my $id = $p * 100 + $i;
	my $key = $i == 2 ? undef : "key-$id";
	my $ts = sprintf('2024-05-0%d 10:%02d:00.%d+00', $p + 1, $i, $i);
	my ($kind, $value) = ('good', qq({"id": $id, "amount": $i, "ts": "$ts"}));
	($kind, $value) = ('malformed', qq({"id": $id, "amount": ))               if $i % 6 == 3;
	($kind, $value) = ('bad_value', qq({"id": $id, "amount": "abc"}))         if $i == 4;
	($kind, $value) = ('rejected',  qq({"id": $id, "amount": -1}))            if $i == 5;
	($kind, $value) = ('too_large', qq({"id": $id, "status": "$big"}))        if $i == 10;
	$value = qq({"id": $id, "amount": $i, "status": "shipped"}) if $i == 7;    # no event time
	$kafka_status{$id} = $i == 7 ? 'SHIPPED' : 'NEW';
	if ($kind eq 'good') { push @kafka_good, $id; } else { $kafka_dead{$kind}++; }
	return [ $key, $value ];
}
sub produce_orders
{
	my ($from, $to) = @_;
	for my $p (0, 1)
	{
		kcat_produce($bs, 'orders', [ map { order_message($p, $_) } $from .. $to ],
			keys => 1, partition => $p);
	}
}
produce_orders(1, 12);

# ---------------------------------------------------------------------------------------
# Local stream "readings", ingested by alice into bob's table.

sql($node, q{
	CREATE TABLE readings (
		id         int PRIMARY KEY,
		sensor     text,
		value      int CHECK (value >= 0),
		note       text DEFAULT 'default note',
		doubled    int GENERATED ALWAYS AS (value * 2) STORED,
		at         timestamptz,
		touched_by text
	);
	CREATE FUNCTION readings_touch() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		NEW.sensor := upper(NEW.sensor);
		NEW.touched_by := current_user;
		RETURN NEW;
	END $$;
	CREATE TRIGGER readings_touch BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION readings_touch();
	ALTER TABLE readings OWNER TO bob;
	ALTER FUNCTION readings_touch() OWNER TO bob;
	GRANT INSERT ON readings TO alice;
	CREATE TABLE other_t (id int);
	SELECT tributary.create_stream('other', 'other_t', 'local', '{"format": "json"}');
});
sql($node, q{SET ROLE alice; SELECT tributary.create_stream('readings', 'readings', 'local',
	'{"format": "json"}', key => 'sensor', event_time => 'at')});

# [kind, payload, id, sensor]: in this order, one ingest call.
my @readings = (
	[ 'good', '{"id": 1, "sensor": "north", "value": 5, "at": "2024-05-01 10:00:01+00"}', 1, 'north' ],
	[ 'malformed', '{"id": 2, "sensor": broken' ],
	[ 'good', '{"id": 3, "value": 7, "note": "given"}', 3, undef ],
	[ 'bad_value', '{"id": 4, "sensor": "x", "value": "abc"}' ],
	[ 'rejected', '{"id": 5, "sensor": "south", "value": -1, "at": "2024-05-01 10:00:05+00"}' ],
	[ 'too_large', qq({"id": 6, "sensor": "big", "note": "$big"}) ],
	[ 'good', '{"id": 7, "sensor": "south", "value": 0, "at": "2024-05-01 10:00:07.5+02"}', 7, 'south' ],
	[ 'good', '{"id": 8, "sensor": "East", "value": 12, "at": "2024-05-01T10:00:08Z"}', 8, 'East' ]);
my @good_idx = grep { $readings[$_][0] eq 'good' } 0 .. $#readings;
my %dead = map { my $k = $_; ($k => scalar grep { $_->[0] eq $k } @readings) }
  qw(too_large malformed bad_value rejected);
my $ndead = @readings - @good_idx;

my $array = 'ARRAY[' . join(',', map { sql_literal($_->[1]) } @readings) . ']::text[]';
my ($result, $arrived_now) = split /\n/, sql($node, qq{
	BEGIN;
	SET LOCAL ROLE alice;
	SELECT accepted || '/' || dead_lettered FROM tributary.ingest('readings', $array);
	RESET ROLE;
	SELECT count(*) FROM } . batches('readings') . q{ AND arrived = now();
	COMMIT;});
is($result, scalar(@good_idx) . "/$ndead", 'ingest: accepted and dead-lettered as sent');
is( sql($node, q{SELECT note || '|' || sensor || '|' || doubled || '|' || touched_by FROM readings WHERE id = 1}),
	'default note|NORTH|10|alice',
	'ingest: the landed row has its default, the trigger\'s value and its generated column');

is( sql($node, 'SELECT count(*) || \'/\' || count(DISTINCT (pid, batch)) FROM ' . seen('readings')),
	scalar(@good_idx) . '/1', 'ingest: the stage saw one row per landed message, in one batch');
is( sql($node, q{SELECT string_agg(s.msg || ':' || coalesce(t.id::text, 'none'), ',' ORDER BY s.rownum)
		FROM tributary_test_stage_seen s LEFT JOIN readings t ON t::text = s."row"
		WHERE s.stream = 'readings'}),
	join(',', map { "$_:$readings[$_][2]" } @good_idx),
	'ingest: rows in message order, each exactly as it landed (record_out), with its message');
is( sql($node, q{SELECT string_agg(s."row", E'\n' ORDER BY s.rownum) FROM tributary_test_stage_seen s
		WHERE s.stream = 'readings'}),
	sql($node, q{SELECT string_agg(t::text, E'\n' ORDER BY id) FROM readings t}),
	'ingest: the rows seen are the rows of the table');
is( sql($node, q{SELECT string_agg(coalesce(s.key, 'NULL'), ',' ORDER BY s.rownum)
		FROM tributary_test_stage_seen s WHERE s.stream = 'readings'}),
	join(',', map { defined $readings[$_][3] ? uc $readings[$_][3] : 'NULL' } @good_idx),
	'ingest: the key is the landed value (changed by the trigger), NULL when null');
is( sql($node, q{SELECT count(*) FROM tributary_test_stage_seen s JOIN readings t ON t::text = s."row"
		WHERE s.stream = 'readings' AND s.key IS NOT DISTINCT FROM t.sensor
		  AND s.event_time IS NOT DISTINCT FROM t.at
		  AND s.topic IS NULL AND s."partition" IS NULL AND s."offset" IS NULL}),
	scalar(@good_idx), 'ingest: key and event time of the landed row; no source position');
is( sql($node, 'SELECT concat_ws(\'|\', nmsgs, nrows, dead_too_large, dead_malformed, dead_bad_value,
		dead_rejected, role, restricted::text) FROM ' . batches('readings')),
	join('|', scalar(@readings), scalar(@good_idx), @dead{qw(too_large malformed bad_value rejected)}, 'alice', 'false'),
	'ingest: the batch\'s sizes and dead letters by reason; the stage ran as the caller, unrestricted');
is($arrived_now, '1', 'ingest: the batch arrived at its transaction\'s start');

# A batch whose every message dies still reaches the stage (its dead letters count).
sql($node, q{SELECT tributary.ingest('readings', ARRAY['nope', '{"id": 9, "value": -5}']::text[])});
is( sql($node, 'SELECT concat_ws(\'|\', nmsgs, nrows, dead_malformed, dead_rejected) FROM '
		  . batches('readings') . ' AND nrows = 0'),
	'2|0|1|1', 'ingest: a batch with no row reaches the stage with its dead letters');

# Only the listed streams: "other" is not listed in postgresql.conf; a session's SET lists
# it (and only it) for this session's ingest calls.
sql($node, q{SELECT tributary.ingest('other', '{"id": 1}'::text)});
is(sql($node, 'SELECT count(*) FROM ' . batches('other')), '0', 'a stream not listed runs no stage');
my $readings_batches = sql($node, 'SELECT count(*) FROM ' . batches('readings'));
sql($node, q{
	SET tributary_test_stage.streams = 'other';
	SELECT tributary.ingest('other', '{"id": 2}'::text);
	SELECT tributary.ingest('readings', '{"id": 20, "sensor": "w", "value": 1}'::text);
});
is( sql($node, 'SELECT (SELECT count(*) FROM ' . seen('other') . ') || \'/\' || (SELECT count(*) FROM '
		  . batches('readings') . ')'),
	"1/$readings_batches", 'a session\'s SET decides which streams its ingest calls stage');

# A stage that raises fails the ingest call with its error, named by the runner's context;
# it is not isolated as a message's fault (P0001 would be). The statement rolls back whole.
my $err = sql_fails($node, q{
	\set VERBOSITY verbose
	SET tributary_test_stage.fail = on;
	SELECT tributary.ingest('readings', ARRAY['{"id": 30, "sensor": "w", "value": 1}', 'broken']::text[]);
}) || '';
like($err, qr/P0001: tributary_test_stage fails the batch of stream "readings" as asked/,
	'ingest: a stage\'s error fails the call');
like($err, qr/CONTEXT:  tributary stage "test_stage" of stream "readings"/,
	'ingest: the error names the stage and the stream');
is( sql($node, q{
	SELECT accepted || '/' || dead_lettered FROM tributary.ingest('readings',
		ARRAY['{"id": 30, "sensor": "w", "value": 1}', 'broken']::text[]);
	SELECT count(*) FROM tributary_test_stage_seen WHERE stream = 'readings' AND "row" LIKE '(30,%';}),
	"1/1\n1", 'ingest: with the stage working again the same batch commits, seen once');

# ---------------------------------------------------------------------------------------
# Kafka: the worker's batches.

my $extowner = sql($node, q{SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'tributary'});
sub kafka_ndead { my $n = 0; $n += $_ for values %kafka_dead; return $n; }

# Every good id once in the target, every bad message once a dead letter, and the stage saw
# exactly the target's rows, each once, with its message's position, key and event time.
sub check_orders
{
	my ($what) = @_;
	my $ngood = @kafka_good;
	my $ndead = kafka_ndead();
	ok(wait_for($node, 'SELECT count(*) FROM orders', $ngood, 120), "$what: $ngood rows landed");
	ok( wait_for(
			$node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'orders'},
			$ndead, 60),
		"$what: $ndead dead letters");
	is( sql($node, q{SELECT string_agg(id::text, ',' ORDER BY id) FROM orders}),
		join(',', sort { $a <=> $b } @kafka_good), "$what: the target holds exactly the good ids");
	is( sql($node, q{
			SELECT (SELECT count(*) FROM tributary_test_stage_seen WHERE stream = 'orders') || '/' ||
			       (SELECT count(DISTINCT "row") FROM tributary_test_stage_seen WHERE stream = 'orders') || '/' ||
			       (SELECT count(*) FROM orders t WHERE NOT EXISTS (SELECT FROM tributary_test_stage_seen s
			                    WHERE s.stream = 'orders' AND s."row" = t::text))}),
		"$ngood/$ngood/0", "$what: the stage saw every landed row once, as it landed, and nothing else");
	is( sql($node, q{
			SELECT count(*) FROM tributary_test_stage_seen s JOIN orders t ON t::text = s."row"
			WHERE s.stream = 'orders' AND s.topic = 'orders'
			  AND s."partition" = t.id / 100 AND s."offset" = t.id % 100 - 1
			  AND s.key IS NOT DISTINCT FROM t.k AND s.event_time IS NOT DISTINCT FROM t.ts}),
		$ngood, "$what: each row with its message's partition and offset, its key and event time");
	is( sql($node, q{
			SELECT count(*) FILTER (WHERE msg <= prev_msg) || '/' || count(*) FILTER (WHERE "offset" <= prev_offset)
			FROM (SELECT msg, "offset",
			             lag(msg) OVER (PARTITION BY pid, batch ORDER BY rownum) AS prev_msg,
			             lag("offset") OVER (PARTITION BY pid, batch, "partition" ORDER BY rownum) AS prev_offset
			      FROM tributary_test_stage_seen WHERE stream = 'orders') r}),
		'0/0', "$what: rows in message order within each batch, offsets rising per partition");
	is( sql($node, q{
			SELECT concat_ws('|', sum(nmsgs), sum(nrows), sum(dead_too_large), sum(dead_malformed),
			                 sum(dead_bad_value), sum(dead_rejected))
			FROM tributary_test_stage_batches WHERE stream = 'orders'}),
		join('|', $ngood + $ndead, $ngood, @kafka_dead{qw(too_large malformed bad_value rejected)}),
		"$what: batches add up to every message once, dead letters counted by reason");
}

check_orders('kafka');
is( sql($node, q{SELECT string_agg(DISTINCT touched_by, ',') FROM orders}) . ' / '
	  . sql($node, q{SELECT string_agg(DISTINCT role || ' ' || restricted::text, ',') FROM tributary_test_stage_batches
	                 WHERE stream = 'orders'}),
	"bob / $extowner false",
	'kafka: rows inserted as the table\'s owner; the stage ran as the worker\'s role, unrestricted');
is( sql($node, q{SELECT string_agg(t.id || ':' || t.status || ':' || t.total, ',' ORDER BY t.id)
		FROM tributary_test_stage_seen s JOIN orders t ON t::text = s."row" WHERE s.stream = 'orders'}),
	join(',', map { "$_:$kafka_status{$_}:" . ($_ % 100) * 10 } sort { $a <=> $b } @kafka_good),
	'kafka: the rows seen carry the default, the trigger\'s value and the generated column');
ok(wait_for($node, 'SELECT count(*) FROM plain_orders', scalar(@kafka_good), 60), 'plain: its rows landed');
is(sql($node, 'SELECT count(*) FROM ' . batches('plain')), '0', 'plain: a stream not listed runs no stage');

# The stage fails: the worker's batches abort (rows, dead letters and what the stage wrote)
# and are retried; "plain", which has no stage, goes on.
my $log_offset = -s $node->logfile;
sql($node, q{ALTER SYSTEM SET tributary_test_stage.fail = on; SELECT pg_reload_conf();});
ok($node->wait_for_log(qr/for stream "orders" reloaded its options/, $log_offset),
	'the worker of "orders" reloaded the configuration');
my $dead_before = kafka_ndead();
my @new_good = do { my $n = @kafka_good; produce_orders(13, 18); @kafka_good[ $n .. $#kafka_good ] };
ok( wait_for(
		$node, q{SELECT last_error LIKE 'tributary_test_stage fails the batch of stream "orders"%'
		         FROM tributary.streams WHERE name = 'orders'}, 't', 60),
	'failing stage: the worker reports the stage\'s error');
my $new_list = join(',', @new_good);
ok(wait_for($node, "SELECT count(*) FROM plain_orders WHERE id IN ($new_list)", scalar(@new_good), 60),
	'failing stage: a stream without the stage goes on');
is( sql($node, qq{SELECT (SELECT count(*) FROM orders WHERE id IN ($new_list)) || '/' ||
		(SELECT count(*) FROM tributary.dead_letters WHERE stream = 'orders')}),
	"0/$dead_before", 'failing stage: the failed batches left no row and no dead letter');

sql($node, q{ALTER SYSTEM RESET tributary_test_stage.fail; SELECT pg_reload_conf();});
check_orders('after the stage works again');
ok( wait_for(
		$node, q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'orders'}, 't', 60),
	'after the stage works again: last_error is cleared');

$node->stop;
$kafka->stop;

# ---------------------------------------------------------------------------------------
# Outside shared_preload_libraries the stage cannot register (tributary is preloaded, so
# the module's reference to TribRegisterStage resolves, and its _PG_init runs).

my $bare = tributary_node('bare', create_extension => 0);
like(
	sql_fails($bare, q{LOAD 'tributary_test_stage'}) || '',
	qr/tributary stage "test_stage" must be registered while shared_preload_libraries are loaded/,
	'LOAD of a module that registers a stage is refused');
$bare->stop;

done_testing();
