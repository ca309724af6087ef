# Snapshots per key and NOTIFY fan-out, with real LISTEN clients (docs/fanout.md).
#
# - Several sessions calling ingest on one stream at once: a listener hears seqs 1..N in
#   order with no gap (commit order), and applying what it heard gives exactly the snapshot.
# - Payloads: upsert with the record, delete, a record over 8000 bytes is "truncated",
#   payload 'keys' leaves the record out, the key channel carries its key's changes.
# - A Kafka stream with keyed messages and tombstones (NULL values) over two partitions,
#   consumed by two workers, the worker killed with SIGKILL mid-stream: the snapshot ends
#   as the last message per key says; a local stream fed the same messages agrees.
# - An idle stream sends heartbeats with its seq.
# - The notification queue past tributary.fanout_queue_limit (set tiny here, so that a
#   listener idle in a transaction fills it): batches keep committing, notifications are
#   skipped and counted, and once the listener lets go one resync goes out.
# - 50 listeners at once all hear every change.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(sleep);
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { snap => 2 });
my $bs = $kafka->bootstrap;

my $node = tributary_node('snapshot', conf => "restart_after_crash = on");

# The notifications a background psql session heard so far: [channel, payload] in order.
sub heard
{
	my ($session) = @_;
	my $out = $session->query_safe('SELECT 1');
	my @got;
	while ($out =~ /Asynchronous notification "([^"]+)" with payload "(.*)" received from server process/g)
	{
		push @got, [ $1, $2 ];
	}
	return @got;
}

# The first number field named $field in a JSON payload.
sub field
{
	my ($payload, $field) = @_;
	return $payload =~ /"$field":(-?\d+)/ ? $1 : undef;
}

# ---------------------------------------------------------------------------------------
# Concurrent sessions: seqs in commit order, the listener's state equals the snapshot.
sql($node, q{
	CREATE TABLE c_t (id text, v int, s int, big text);
	SELECT tributary.create_stream('cs', 'c_t', 'local', '{"format": "json"}', key => 'id');
	SELECT tributary.set_snapshot('cs');
	SELECT tributary.set_fanout('cs', heartbeat => NULL);
});
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN "tributary.cs"');

my @sessions;
for my $s (0 .. 3)
{
	my $script = '';
	for my $b (0 .. 39)
	{
		# each batch: 5 updates of keys shared by every session
		my @batch = map { sql_literal(qq({"id": "k) . (($s * 7 + $b * 3 + $_) % 20) . qq(", "v": $b, "s": $s})) } 0 .. 4;
		$script .= "SELECT tributary.ingest('cs', ARRAY[" . join(',', @batch) . "]::jsonb[]);\n";
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
is($failed, 0, 'concurrent ingest: every session succeeded');

my $last = sql($node, q{SELECT tributary.snapshot_seq('cs')});
my @got;
for (1 .. 50)
{
	push @got, heard($listener);
	last if @got && field($got[-1][1], 'seq') >= $last;
	sleep 0.1;
}
my @seqs = map { field($_->[1], 'seq') } @got;
is(scalar(@seqs), $last, "concurrent ingest: the listener heard $last changes");
is(join(',', @seqs), join(',', 1 .. $last), 'concurrent ingest: seqs 1..N in the order heard, no gap');
my %state;
for my $g (@got)
{
	my ($key) = $g->[1] =~ /"key":"([^"]+)"/;
	my ($record) = $g->[1] =~ /"record":(\{.*\})\}$/;
	$state{$key} = $record;
}
my $snapshot = sql($node, q{SELECT string_agg(key || '=' || record::text, '|' ORDER BY key) FROM tributary.snapshot('cs')});
is(join('|', map { "$_=$state{$_}" } sort keys %state), $snapshot,
	'concurrent ingest: applying what the listener heard gives the snapshot');
is(sql($node, q{SELECT count(*) FROM tributary.snapshot('cs') s
                WHERE s.record <> (SELECT to_jsonb(c) FROM c_t c WHERE c.ctid = (
                    SELECT row_tid FROM tributary.snapshots WHERE stream = 'cs' AND key = s.key))}),
	'0', 'concurrent ingest: each record is its row as it landed');

# A batch in REPEATABLE READ that did not see a batch of the stream committed after its
# snapshot fails with a serialization error and changes nothing (docs/fanout.md, Seqs).
my $rr = $node->background_psql('postgres', on_error_stop => 0);
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$rr->query_safe('SELECT count(*) FROM tributary.snapshots');	# the transaction's snapshot
my $before = sql($node, q{SELECT tributary.snapshot_seq('cs')});
sql($node, q{SELECT tributary.ingest('cs', '{"id": "k1", "v": 100}'::jsonb)});
my ($rr_out, $rr_failed) = $rr->query(q{SELECT tributary.ingest('cs', ARRAY['{"id": "k1", "v": 101}', '{"id": "rr-new", "v": 1}']::jsonb[])});
ok($rr_failed && $rr->{stderr} =~ /could not serialize access due to concurrent update/,
	'repeatable read: a batch behind a committed one fails with a serialization error');
$rr->{stderr} = '';
$rr->query_safe('ROLLBACK');
$rr->quit;
is(sql($node, q{SELECT tributary.snapshot_seq('cs') || ' ' || (SELECT record->>'v' FROM tributary.snapshot('cs', 'k1'))
                || ' ' || (SELECT count(*) FROM tributary.snapshots WHERE stream = 'cs' AND key = 'rr-new')}),
	($before + 1) . ' 100 0', 'repeatable read: the failed batch changed nothing');
$last = $before + 1;
heard($listener);	# the committed batch's change

# ---------------------------------------------------------------------------------------
# Payloads: deletes, records over 8000 bytes, payload 'keys', the key channel.
$listener->query_safe('LISTEN "tributary.cs.k1"');
sql($node, q{SELECT tributary.ingest('cs', ARRAY[NULL]::jsonb[], keys => ARRAY['k2'])});
sql($node, qq{SELECT tributary.ingest('cs', ARRAY['{"id": "k1", "v": 1, "big": "' || repeat('x', 9000) || '"}']::jsonb[])});
@got = heard($listener);
my $seq = $last;
is_deeply(
	[ map { $_->[0] . ' ' . $_->[1] } @got ],
	[
		qq(tributary.cs {"stream":"cs","key":"k2","seq":) . ($seq + 1) . qq(,"op":"delete"}),
		qq(tributary.cs {"stream":"cs","key":"k1","seq":) . ($seq + 2) . qq(,"op":"upsert","truncated":true}),
		qq(tributary.cs.k1 {"stream":"cs","key":"k1","seq":) . ($seq + 2) . qq(,"op":"upsert","truncated":true}),
	],
	'a delete; a record over 8000 bytes is truncated (on the stream and on the key channel)');
sql($node, q{SELECT tributary.set_fanout('cs', payload => 'keys', heartbeat => NULL)});
sql($node, q{SELECT tributary.ingest('cs', '{"id": "k1", "v": 2}'::jsonb)});
@got = heard($listener);
is($got[0][1], qq({"stream":"cs","key":"k1","seq":) . ($seq + 3) . qq(,"op":"upsert"}),
	"payload 'keys': no record");
sql($node, q{SELECT tributary.set_fanout('cs', channels => '{key}', heartbeat => NULL)});
sql($node, q{SELECT tributary.ingest('cs', ARRAY['{"id": "k1", "v": 3}', '{"id": "k3", "v": 3}']::jsonb[])});
@got = heard($listener);
is_deeply([ map { $_->[0] } @got ], ['tributary.cs.k1'], "channels '{key}': only the key's channel, only its key");
$listener->quit;

# ---------------------------------------------------------------------------------------
# Kafka: keyed messages and tombstones on two partitions, two workers, SIGKILL mid-stream.
sql($node, q{
	CREATE TABLE k_t (id text, v int, p int);
	CREATE TABLE l_t (LIKE k_t);
});
sql($node, qq{
	SELECT tributary.create_stream('ks', 'k_t', 'kafka',
		'{"brokers": "$bs", "topic": "snap", "batch_size": 50, "batch_ms": 20, "parallelism": 2}',
		key => 'id');
	SELECT tributary.set_snapshot('ks');
	SELECT tributary.create_stream('ls', 'l_t', 'local', '{"format": "json"}', key => 'id');
	SELECT tributary.set_snapshot('ls');
});
# key k<i> lives in partition i % 2; 30 rounds over 60 keys; keys 0..9 deleted in round 10
# (and back after), keys 50..59 deleted at the end.
my %messages = (0 => [], 1 => []);
for my $round (0 .. 29)
{
	for my $i (0 .. 59)
	{
		my $p = $i % 2;
		push @{ $messages{$p} }, [ "k$i", qq({"id": "k$i", "v": $round, "p": $p}) ];
		push @{ $messages{$p} }, [ "k$i", '' ] if $round == 10 && $i < 10;
	}
}
push @{ $messages{ $_ % 2 } }, [ "k$_", '' ] for 50 .. 59;
my @half = map { int(@{ $messages{$_} } / 2) } 0 .. 1;
kcat_produce($bs, 'snap', [ @{ $messages{$_} }[ 0 .. $half[$_] - 1 ] ], partition => $_, keys => 1, tombstones => 1)
  for 0 .. 1;
ok(wait_for($node, q{SELECT count(*) > 100 FROM k_t}, 't', 60), 'kafka: rows land');
my $pid = sql($node, q{SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: ks #1'});
ok($pid, 'kafka: a worker of the stream runs');
kill 'KILL', $pid;
kcat_produce($bs, 'snap', [ @{ $messages{$_} }[ $half[$_] .. $#{ $messages{$_} } ] ], partition => $_, keys => 1,
	tombstones => 1, keep_going => 1)
  for 0 .. 1;
my $rows = 30 * 60;
ok(wait_for($node, qq{SELECT count(*) FROM k_t}, $rows, 120), "kafka: all $rows rows landed, once, after SIGKILL");
ok( wait_for(
		$node, q{SELECT count(*) FROM tributary.snapshots WHERE stream = 'ks' AND record IS NULL},
		'10', 60),
	'kafka: the tombstones at the end deleted their keys');
is( sql($node, q{SELECT count(*) || ' ' || min((record->>'v')::int) || ' ' || max((record->>'v')::int)
                 FROM tributary.snapshot('ks')}),
	'50 29 29', 'kafka: 50 live keys, each at its last message');
is(sql($node, q{SELECT count(DISTINCT seq) = count(*) AND max(seq) = tributary.snapshot_seq('ks')
                FROM tributary.snapshots WHERE stream = 'ks'}),
	't', 'kafka: seqs are unique, the newest is the stream seq');
# the same messages through ingest, per partition in order: the same snapshot
for my $p (0 .. 1)
{
	my @m = @{ $messages{$p} };
	for (my $lo = 0; $lo < @m; $lo += 97)
	{
		my @b = @m[ $lo .. ($lo + 96 > $#m ? $#m : $lo + 96) ];
		sql($node, 'SELECT tributary.ingest(\'ls\', ARRAY['
			  . join(',', map { $_->[1] eq '' ? 'NULL' : sql_literal($_->[1]) } @b)
			  . ']::jsonb[], keys => ARRAY[' . join(',', map { sql_literal($_->[0]) } @b) . '])');
	}
}
is( sql($node, q{SELECT count(*) FROM tributary.snapshot('ks') k FULL JOIN tributary.snapshot('ls') l USING (key)
                 WHERE k.record IS DISTINCT FROM l.record}),
	'0', 'kafka and ingest: the same messages give the same snapshot');

# ---------------------------------------------------------------------------------------
# Heartbeats of an idle stream.
my $hb = $node->background_psql('postgres');
$hb->query_safe('LISTEN "tributary.cs"');
sql($node, q{SELECT tributary.set_fanout('cs', heartbeat => '1 second')});
my $cs_seq = sql($node, q{SELECT tributary.snapshot_seq('cs')});
my @beats;
for (1 .. 100)
{
	push @beats, grep { $_->[1] =~ /"heartbeat":true/ } heard($hb);
	last if @beats >= 2;
	sleep 0.1;
}
ok(@beats >= 2, 'heartbeat: an idle stream sends heartbeats');
is($beats[0][1], qq({"stream":"cs","seq":$cs_seq,"heartbeat":true}), 'heartbeat: it carries the stream seq');
$hb->quit;

# ---------------------------------------------------------------------------------------
# A full notification queue never stops ingest; clients get a resync once it drains.
$node->append_conf('postgresql.conf', "tributary.fanout_queue_limit = '1e-9'\n");
$node->reload;
ok(wait_for($node, q{SELECT current_setting('tributary.fanout_queue_limit')::float8 < 1e-6}),
	'full queue: the limit is set');
sql($node, q{
	CREATE TABLE q_t (id text, pad text);
	SELECT tributary.create_stream('qs', 'q_t', 'local', '{"format": "json"}', key => 'id');
	SELECT tributary.set_snapshot('qs');
	SELECT tributary.set_fanout('qs', heartbeat => '1 second');
});
my $stalled = $node->background_psql('postgres');
$stalled->query_safe('LISTEN "tributary.qs"');
$stalled->query_safe('BEGIN');    # idle in a transaction: it reads no notification
my $follower = $node->background_psql('postgres');
$follower->query_safe('LISTEN "tributary.qs"');
$follower->query_safe('LISTEN "tributary.qs.q1"');
my $pad = 'y' x 3000;
for my $b (1 .. 20)
{
	sql($node, qq{SELECT tributary.ingest('qs', ARRAY(SELECT json_build_object('id', 'q' || i, 'pad', '$pad')::jsonb
	                                                  FROM generate_series(1, 10) i))});
}
is(sql($node, q{SELECT count(*) FROM q_t}), '200', 'full queue: every batch committed');
ok(sql($node, q{SELECT notifications_skipped > 0 FROM tributary.stream_stats WHERE stream = 'qs'}) eq 't',
	'full queue: skipped notifications are counted in stream_stats');
is(sql($node, q{SELECT resync_pending FROM tributary.snapshot_config WHERE stream = 'qs'}), 't',
	'full queue: a resync is owed');
$stalled->query_safe('COMMIT');
$stalled->quit;
my (@resync, @q1);
for (1 .. 100)
{
	my @h = heard($follower);
	push @resync, grep { $_->[1] =~ /"resync":true/ } @h;
	push @q1, grep { $_->[0] eq 'tributary.qs.q1' } @h;
	last if @resync && @q1 && field($q1[-1][1], 'seq') == sql($node, q{SELECT seq FROM tributary.snapshot('qs', 'q1')});
	sleep 0.1;
}
is(@q1 ? field($q1[-1][1], 'seq') : undef, sql($node, q{SELECT seq FROM tributary.snapshot('qs', 'q1')}),
	"full queue: a key's channel, which hears no resync, gets the key's last state once the queue drains");
my $qs_seq = sql($node, q{SELECT tributary.snapshot_seq('qs')});
is(scalar(@resync), 1, 'full queue: once the queue drains, one resync goes out');
is($resync[0][1], qq({"stream":"qs","seq":$qs_seq,"resync":true}), 'full queue: the resync carries the stream seq');
$follower->quit;
$node->append_conf('postgresql.conf', "tributary.fanout_queue_limit = 0.5\n");
$node->reload;
wait_for($node, q{SELECT current_setting('tributary.fanout_queue_limit')::float8 = 0.5});

# ---------------------------------------------------------------------------------------
# min_interval throttles a key's channel and never hides its last state; the stream's
# channel still hears every change.
sql($node, q{SELECT tributary.set_fanout('cs', min_interval => '2 seconds', heartbeat => NULL)});
my $room = $node->background_psql('postgres');
$room->query_safe('LISTEN "tributary.cs.t1"');
$room->query_safe('LISTEN "tributary.cs"');
my $t0 = sql($node, q{SELECT tributary.snapshot_seq('cs')});
sql($node, qq{SELECT tributary.ingest('cs', '{"id": "t1", "v": $_}'::jsonb)}) for 1 .. 5;
my @room;
for (1 .. 100)
{
	push @room, heard($room);
	last if grep { $_->[0] eq 'tributary.cs.t1' && $_->[1] =~ /"v": 5/ } @room;
	sleep 0.1;
}
is(join(',', map { field($_->[1], 'seq') } grep { $_->[0] eq 'tributary.cs' } @room),
	join(',', $t0 + 1 .. $t0 + 5), 'min_interval: the stream channel heard every change');
my @key_heard = map { $_->[1] =~ /"v": (\d+)/ ? $1 : '?' } grep { $_->[0] eq 'tributary.cs.t1' } @room;
is(join(',', @key_heard), '1,5', 'min_interval: the key channel heard the first change at once, then the last state');
$room->quit;

# ---------------------------------------------------------------------------------------
# Closed quality windows on tributary.<stream>.quality.
my $ql = $node->background_psql('postgres');
$ql->query_safe('LISTEN "tributary.qw.quality"');
sql($node, q{
	CREATE TABLE qw_t (id int, at timestamptz, v float8);
	SELECT tributary.create_stream('qw', 'qw_t', 'local', '{"format": "json"}', key => 'id', event_time => 'at');
	SELECT tributary.set_quality('qw', '1 minute');
	SELECT tributary.ingest('qw', ARRAY(SELECT json_build_object('id', i, 'at', '2026-01-01 10:00:00+00'::timestamptz
	                                           + i * interval '1 second', 'v', i)::jsonb FROM generate_series(0, 59) i));
	SELECT tributary.ingest('qw', '{"id": 100, "at": "2026-01-01 10:01:30+00", "v": 1}'::jsonb);
});
my @qn;
for (1 .. 100)
{
	push @qn, heard($ql);
	last if @qn;
	sleep 0.1;
}
like($qn[0][1] // '',
	qr/^\{"stream":"qw","window_start":"2026-01-01T10:00:00\+00:00","window_end":"2026-01-01T10:01:00\+00:00","revision":0,"rows":60,.*"quality_score":1,.*\}$/,
	'quality: a closed window is notified on tributary.<stream>.quality');
$ql->quit;

# ---------------------------------------------------------------------------------------
# 50 listeners at once hear every change.
sql($node, q{SELECT tributary.set_fanout('cs', heartbeat => NULL)});
my @many = map { $node->background_psql('postgres') } 1 .. 50;
$_->query_safe('LISTEN "tributary.cs"') for @many;
$before = sql($node, q{SELECT tributary.snapshot_seq('cs')});
sql($node, q{SELECT tributary.ingest('cs', ARRAY(SELECT json_build_object('id', 'm' || i, 'v', i)::jsonb
                                              FROM generate_series(1, 100) i))});
my $complete = 0;
for my $l (@many)
{
	my @h;
	for (1 .. 50)
	{
		push @h, heard($l);
		last if @h >= 100;
		sleep 0.1;
	}
	$complete++ if join(',', map { field($_->[1], 'seq') } @h) eq join(',', $before + 1 .. $before + 100);
	$l->quit;
}
is($complete, 50, '50 listeners: each heard the 100 changes, in order');

done_testing();
