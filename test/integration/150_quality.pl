# Continuous quality windows (tributary.set_quality) with real servers:
#
#  - the same messages through a Kafka stream (4 partitions, so event times arrive out of
#    order and late rows amend closed windows) and through tributary.ingest on a local
#    stream give the same closed windows, and both equal window_quality and
#    column_quality over their tables, also after kill -9 of the Kafka worker and an
#    immediate shutdown mid-stream (crash identity);
#  - many sessions calling ingest on one stream at once: every call succeeds (no
#    deadlock), and the closed windows equal window_quality over the table;
#  - a silent stream: with no new data the launcher closes windows on the wall clock
#    (empty windows), a freshness threshold raises an alert that a LISTEN client on
#    tributary.alerts receives, and fresh data recovers it.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { readings => 4 });
my $bs = $kafka->bootstrap;
my $node = tributary_node('quality', conf => "restart_after_crash = on\nlog_min_messages = info");

# The columns both functions and the closed windows share (validity, timeliness, dead and
# late rows are the stream's own).
my $wcols = 'rows, duplicates, completeness, uniqueness, consistency, outliers, newest_event';
my $ccols = 'rows, non_null, completeness, distinct_count, mean, stddev, min, max, p50, p90, p99, '
  . 'outliers, outlier_rate';

# Closed windows of $stream that differ from window_quality / column_quality over $table.
sub differing
{
	my ($stream, $table) = @_;
	my $w = sql($node, qq{
		SELECT count(*) FILTER (WHERE ($wcols) IS DISTINCT FROM
		                              (SELECT ($wcols) FROM tributary.window_quality('$table', 'at', '1 minute',
		                                   columns => '{device,value}', key_column => 'id') a
		                               WHERE a.window_start = w.window_start)) || '/' || count(*)
		FROM tributary.quality_windows w WHERE stream = '$stream'});
	my $c = sql($node, qq{
		SELECT count(*) FILTER (WHERE ($ccols) IS DISTINCT FROM
		                              (SELECT ($ccols) FROM tributary.column_quality('$table', 'at', '1 minute',
		                                   columns => '{device,value}', key_column => 'id') a
		                               WHERE a.window_start = c.window_start AND a.column_name = c.column_name))
		FROM tributary.quality_columns c WHERE stream = '$stream'});
	return "$w/$c";
}

# The message of reading $i: event times 50 ms apart (3000 messages span 2.5 minutes),
# every 37th a duplicate id, every 11th without a device, every 13th without a value.
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

sql($node, q{
	CREATE TABLE k_rows (id int, at timestamptz, device text, value float8);
	CREATE TABLE l_rows (LIKE k_rows);
});
sql($node, qq{
	SELECT tributary.create_stream('qk', 'k_rows', 'kafka',
		'{"brokers": "$bs", "topic": "readings", "batch_size": 100, "batch_ms": 20}',
		key => 'id', event_time => 'at');
	SELECT tributary.create_stream('ql', 'l_rows', 'local', '{"format": "json"}',
		key => 'id', event_time => 'at');
	SELECT tributary.set_quality('qk', '1 minute', columns => '{device,value}');
	SELECT tributary.set_quality('ql', '1 minute', columns => '{device,value}');
});

# The local stream: the same messages in batches of 100, in order.
for (my $lo = 1; $lo <= 3000; $lo += 100)
{
	my @batch = map { sql_literal(reading($_)) } ($lo .. $lo + 99);
	sql($node, "SELECT tributary.ingest('ql', ARRAY[" . join(',', @batch) . "])");
}
is(sql($node, q{SELECT count(*) FROM tributary.quality_windows WHERE stream = 'ql'}), '2',
	'local: windows 10:00 and 10:01 closed; 10:02 is open (the watermark is 10:02:30)');
is(differing('ql', 'l_rows'), '0/2/0', 'local: closed windows equal window_quality and column_quality');

# Kafka: dealt over 4 partitions (event times interleave across partitions), in two
# halves, with kill -9 of the worker during the first and an immediate shutdown during
# the second.
kcat_produce_dealt($bs, 'readings', 4, [ 1 .. 1500 ], \&reading);
# (the worker may be through the first half before the kill: then the kill tests a restart
# between batches; either way nothing may be lost or doubled)
ok(wait_for($node, 'SELECT count(*) > 0 FROM k_rows', 't', 60), 'kafka: rows flowing')
  or diag(sql($node, q{SELECT state, last_error, messages, rows, batches FROM tributary.stream_stats
	                   WHERE stream = 'qk' AND topic IS NULL}));
kill 'KILL', worker_pid($node, 'qk');
ok(wait_for($node, 'SELECT count(*) FROM k_rows', '1500', 120), 'kafka: first half in after kill -9');
kcat_produce_dealt($bs, 'readings', 4, [ 1501 .. 3000 ], \&reading);
ok(wait_for($node, 'SELECT count(*) > 1600 FROM k_rows', 't', 60), 'kafka: second half flowing');
$node->stop('immediate');
$node->start;
ok(wait_for($node, 'SELECT count(*) FROM k_rows', '3000', 120), 'kafka: all 3000 rows after the restart');
is(sql($node, q{SELECT count(*) - count(DISTINCT (id, at)) FROM k_rows}), '0', 'kafka: no row stored twice');
ok(wait_for($node, q{SELECT count(*) FROM tributary.quality_windows WHERE stream = 'qk'}, '2', 60),
	'kafka: windows 10:00 and 10:01 closed');
is(differing('qk', 'k_rows'), '0/2/0', 'kafka: closed windows equal window_quality and column_quality');
my $kw = join(', ', map { "k.$_" } split /, /, $wcols);
my $lw = join(', ', map { "l.$_" } split /, /, $wcols);
is( sql($node, qq{
		SELECT count(*) FROM tributary.quality_windows k JOIN tributary.quality_windows l
		    USING (window_start)
		WHERE k.stream = 'qk' AND l.stream = 'ql' AND ($kw) IS NOT DISTINCT FROM ($lw)}),
	'2', 'kafka and local closed the same windows with the same metrics');
is( sql($node, q{SELECT bool_and(k.state IS NOT NULL) AND count(*) = 2 FROM tributary.quality_windows k
	             WHERE k.stream = 'qk'}), 't', 'kafka: closed windows keep their states');

# ---------------------------------------------------------------------------------------
# Many sessions calling ingest on one stream at once.
sql($node, q{
	CREATE TABLE c_rows (LIKE k_rows);
	SELECT tributary.create_stream('qc', 'c_rows', 'local', '{"format": "json"}',
		key => 'id', event_time => 'at');
	SELECT tributary.set_quality('qc', '1 minute', columns => '{device,value}');
});
my @sessions;
for my $s (0 .. 3)
{
	my $script = '';
	for my $b (0 .. 19)
	{
		my @batch = map { sql_literal(reading($_)) } grep { $_ % 4 == $s } (1 + $b * 120 .. 120 + $b * 120);
		$script .= "SELECT tributary.ingest('qc', ARRAY[" . join(',', @batch) . "]);\n";
	}
	my ($out, $err) = ('', '');
	push @sessions, {
		h => IPC::Run::start(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
			'<', \$script, '>', \$out, '2>', \$err),
		err => \$err };
}
my $failed = 0;
for my $s (@sessions)
{
	$s->{h}->finish;
	$failed++ if $s->{h}->result != 0;
	diag(${ $s->{err} }) if $s->{h}->result != 0;
}
is($failed, 0, 'concurrent ingest: every session succeeded (no deadlock, no error)');
is(sql($node, 'SELECT count(*) FROM c_rows'), '2400', 'concurrent ingest: every row landed');
sql($node, q{SELECT tributary.close_quality_windows('qc')});
is(sql($node, q{SELECT count(*) FROM tributary.quality_windows WHERE stream = 'qc'}), '2',
	'concurrent ingest: windows 10:00 and 10:01 closed (the watermark is 10:02:00)');
is(differing('qc', 'c_rows'), '0/2/0', 'concurrent ingest: the closed windows equal window_quality');
is( sql($node, q{SELECT count(*) FROM tributary.quality_partials p JOIN tributary.quality_config c USING (stream)
	             WHERE stream = 'qc' AND p.pane_start < c.closed_until}),
	'0', 'concurrent ingest: no partial left of a closed window');

# ---------------------------------------------------------------------------------------
# A silent stream closes its windows on the wall clock, and its freshness alerts.
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN "tributary.alerts"');
sql($node, q{
	CREATE TABLE s_rows (id int, at timestamptz, v int);
	SELECT tributary.create_stream('qsil', 's_rows', 'local', '{"format": "json"}',
		key => 'id', event_time => 'at');
	SELECT tributary.set_quality('qsil', '2 seconds', grace => '1 second',
		thresholds => '{"freshness": 4}');
	SELECT tributary.ingest('qsil', ARRAY(
		SELECT json_build_object('id', i, 'at', now() - (10 - i) * interval '500 ms', 'v', i)::text
		FROM generate_series(1, 10) i));
});
ok( wait_for(
		$node, q{SELECT count(*) >= 2 FROM tributary.quality_windows w
		         WHERE stream = 'qsil' AND rows = 0 AND window_start > (SELECT max(at) FROM s_rows)},
		't', 30),
	'silent: the launcher closes empty windows after the newest event, on the wall clock');
ok( wait_for(
		$node, q{SELECT kind || ':' || (failed ? 'freshness') FROM tributary.alerts WHERE stream = 'qsil'},
		'raised:true', 30),
	'silent: freshness beyond 4 s raises an alert');
my $heard = $listener->query_safe('SELECT 1');
like($heard, qr/Asynchronous notification "tributary.alerts" with payload ".*"stream": "qsil".*"kind": "raised"/,
	'silent: a LISTEN client on tributary.alerts hears it');
# A row of a window the wall clock closed (newer than any event seen) is late, and amends it.
my $closed = sql($node, q{SELECT min(window_start) FROM tributary.quality_windows
	WHERE stream = 'qsil' AND rows = 0 AND window_start > (SELECT max(at) FROM s_rows)});
sql($node, qq{SELECT tributary.ingest('qsil', ARRAY[json_build_object('id', 50,
	'at', '$closed'::timestamptz + interval '500 ms', 'v', 0)::text])});
is( sql($node, qq{SELECT revision || '/' || rows || '/' || late_rows FROM tributary.quality_windows
	              WHERE stream = 'qsil' AND window_start = '$closed'}),
	'1/1/1', 'silent: a row of a window the wall clock closed counts as late, and amends it');
sql($node, q{SELECT tributary.ingest('qsil', ARRAY(
	SELECT json_build_object('id', 100 + i, 'at', now() + i * interval '300 ms', 'v', i)::text
	FROM generate_series(1, 10) i))});
ok( wait_for(
		$node, q{SELECT string_agg(kind, ',' ORDER BY id) FROM tributary.alerts WHERE stream = 'qsil'},
		'raised,recovered', 30),
	'silent: fresh data recovers, once');
$listener->quit;

# ---------------------------------------------------------------------------------------
# Dropping quality windows or a stream waits for its batches in flight, then takes what they
# wrote (the windows tables have no foreign keys that would make it wait).
sql($node, q{
	CREATE TABLE d_rows (LIKE k_rows);
	SELECT tributary.create_stream('qd', 'd_rows', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
	SELECT tributary.set_quality('qd', '1 minute', columns => '{device,value}');
});
# set_quality too, with other columns: the partials of the old settings must not stay beside
# the new ones (the fold cannot merge windows of different columns).
for my $drop (
	"SELECT tributary.set_quality('qd', '1 minute', columns => '{device}')",
	"SELECT tributary.drop_quality('qd')",
	"SELECT tributary.drop_stream('qd')")
{
	sql($node, q{SELECT tributary.set_quality('qd', '1 minute', columns => '{device,value}')})
		if $drop =~ /drop_stream|drop_quality/;
	my $batch = $node->background_psql('postgres');
	$batch->query_safe('BEGIN');
	$batch->query_safe("SELECT tributary.ingest('qd', ARRAY["
		  . join(',', map { sql_literal(reading($_)) } 1 .. 5) . "])");
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-c', $drop ], '>', \$out, '2>', \$err);
	ok( wait_for(
			$node, qq{SELECT count(*) FROM pg_stat_activity WHERE query = \$\$$drop\$\$ AND wait_event_type = 'Lock'},
			'1', 30),
		"$drop waits for the batch in flight");
	$batch->query_safe('COMMIT');
	$batch->quit;
	$h->finish;
	ok(!$h->result, "$drop then succeeds") or diag($err);
	is(sql($node, q{SELECT count(*) FROM tributary.quality_partials WHERE stream = 'qd'}), '0',
		"$drop: no partial of the batch in flight left");
	if ($drop =~ /set_quality/)
	{
		sql($node, "SELECT tributary.ingest('qd', ARRAY[" . join(',', map { sql_literal(reading($_)) } 6 .. 9) . "])");
		is(sql($node, q{SELECT sum(rows) FROM tributary.quality_now('qd')}), '4',
			'set_quality: the next batches count in windows of the new columns');
	}
}

done_testing();
