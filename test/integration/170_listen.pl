# tributary-listen, the fan-out's listener client (tools/tributary-listen.c), against a real
# server (docs/fanout.md):
#
#  - a whole-stream follower hydrates 200 keys, follows 20 batches of upserts, deletes
#    (tombstones) and records too large for NOTIFY (re-read), survives two
#    pg_terminate_backend of its connection, and its final state equals
#    tributary.snapshot() exactly, with no gap seen (the server's seqs are consecutive);
#  - a follower of one key, and of a key whose channel name is shortened by the hash, end
#    with that key's snapshot, and print nothing of other keys;
#  - a role with only SELECT on the target follows the stream;
#  - skipped notifications (tributary.fanout_queue_limit) bring a resync, a fan-out turned
#    off and on a gap, and a heartbeat newer than the client a re-hydration; each time the
#    state equals the snapshot again;
#  - --exit-after and --idle-exit end it with a state line, exit status 0;
#  - --quality and --alerts print a closed window and its alert;
#  - a Kafka stream of 100,000 updates over 1,000 keys (every 50th a tombstone), its
#    follower's backend terminated twice mid-stream, ends equal to its snapshot too.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TributaryTest;
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 1, topics => { kf => 4 });
my $node = tributary_node('listen');
my $timeout = $PostgreSQL::Test::Utils::timeout_default;

sql($node, q{
	CREATE TABLE items (id text, v int, note text);
	SELECT tributary.create_stream('s', 'items', 'local', '{"format": "json"}', key => 'id');
	SELECT tributary.set_snapshot('s');
	SELECT tributary.set_fanout('s');
	CREATE ROLE reader LOGIN;
	GRANT SELECT ON items TO reader;
});

# ---------------------------------------------------------------------------------------
# Helpers: a listener is { h => IPC::Run handle, out, err => file names, name }. Its output
# goes to files, never to a pipe that could fill while the test does something else.

my $outdir = PostgreSQL::Test::Utils::tempdir('listen');
my @started;

# A listener left running by a failed test would retry its connection forever.
END
{
	$_->{h}->kill_kill for grep { $_->{h}->pumpable } @started;
}

sub listener
{
	my ($name, @args) = @_;
	my $conninfo = 'host=' . $node->host . ' port=' . $node->port
	  . " dbname=postgres application_name=$name";
	$conninfo .= " user=$1" if $name =~ /^(reader)/;
	my ($out, $err) = ("$outdir/$name.out", "$outdir/$name.err");
	my $h = IPC::Run::start([ 'tributary-listen', '-d', $conninfo, @args ],
		'<', \undef, '>', $out, '2>', $err);
	push @started, { h => $h, out => $out, err => $err, name => $name };
	return $started[-1];
}

sub slurp { return -e $_[0] ? PostgreSQL::Test::Utils::slurp_file($_[0]) : ''; }

# The complete lines printed so far.
sub lines
{
	my ($l) = @_;
	return slurp($l->{out}) =~ /^(.*)\n/mg;
}

# The JSON lines printed so far, decoded.
sub events { return map { decode_json($_) } lines($_[0]); }

# Poll until $cond->(@events) is true; 1, or 0 after the timeout (with a diag).
sub wait_events
{
	my ($l, $what, $cond) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if $cond->(events($l));
		usleep(100_000);
	}
	diag("$l->{name}: timed out waiting for $what; stderr: " . slurp($l->{err}));
	return 0;
}

# The newest stream seq the listener has shown: its hydrations and its changes (for a
# re-read record, the seq of the notification that asked for it).
sub shown_seq
{
	my $seq = -1;
	for my $e (@_)
	{
		next unless $e->{event} =~ /^(hydrate|upsert|delete)$/;
		my $s = $e->{reread} ? $e->{notified_seq} : $e->{seq};
		$seq = $s if $s > $seq;
	}
	return $seq;
}

# Wait for the exit (after SIGTERM unless $no_signal); (wait status, state line, events).
sub stop_listener
{
	my ($l, $no_signal) = @_;
	$l->{h}->signal('TERM') unless $no_signal;
	$l->{h}->finish;
	my @lines = lines($l);
	my ($state) = grep { /^\{"event":"state"/ } @lines;
	return ($l->{h}->full_result(0), $state, map { decode_json($_) } @lines);
}

# Keys where the state line differs from tributary.snapshot($stream[, $key]): "0" when none.
sub state_differs
{
	my ($state, $stream, $key) = @_;
	my $args = sql_literal($stream) . (defined $key ? ', ' . sql_literal($key) : '');
	return sql($node, qq{
		SELECT count(*) || ' of ' || (SELECT count(*) FROM tributary.snapshot($args))
		FROM tributary.snapshot($args) s
		FULL JOIN jsonb_each((} . sql_literal($state) . qq{::jsonb)->'keys') c(key, v) USING (key)
		WHERE s.key IS NULL OR c.key IS NULL OR (c.v->>'seq')::bigint <> s.seq
		   OR c.v->'record' <> s.record});
}

sub seq_now { return sql($node, "SELECT tributary.snapshot_seq('s')"); }

sub backend_of
{
	my ($name) = @_;
	return sql($node, "SELECT pid FROM pg_stat_activity WHERE application_name = '$name'");
}

sub ingest
{
	my (@msgs) = @_;
	sql($node, "SELECT tributary.ingest('s', ARRAY[" . join(',', map { sql_literal($_) } @msgs)
		  . ']::jsonb[])');
}

sub delete_keys
{
	my (@keys) = @_;
	sql($node, "SELECT tributary.ingest('s', ARRAY[" . join(',', map { 'NULL' } @keys)
		  . ']::jsonb[], keys => ARRAY[' . join(',', map { sql_literal($_) } @keys) . '])');
}

my $long_key = 'a-key-whose-channel-name-is-longer-than-sixty-three-bytes-' . ('x' x 20);
my $big = 'y' x 9000;

# ---------------------------------------------------------------------------------------
# Hydrate, follow, reconnect.

ingest(map { qq({"id": "k$_", "v": $_}) } 0 .. 199);
ingest(qq({"id": "$long_key", "v": 0}));

my $la = listener('listen-a', '--stream', 's');
my $lb = listener('listen-b', '--stream', 's', '--key', 'k7');
my $lc = listener('listen-c', '--stream', 's', '--key', $long_key);
my $lr = listener('reader-r', '--stream', 's');
my $seq0 = seq_now();
for my $l ($la, $lb, $lc, $lr)
{
	ok(wait_events($l, 'the hydration', sub { grep { $_->{event} eq 'hydrate' } @_ }),
		"$l->{name}: hydrated");
}
my ($hyd) = grep { $_->{event} eq 'hydrate' } events($la);
is("$hyd->{seq}/$hyd->{keys}", "$seq0/201", 'listen-a: hydrated at the stream seq, with every key');
is(scalar(grep { $_->{event} eq 'snapshot' } events($la)), 201, 'listen-a: one snapshot line per key');
isnt(sql($node, "SELECT tributary.fanout_channel('s', " . sql_literal($long_key) . ')'),
	"tributary.s.$long_key", 'the long key has a shortened channel');

# 20 batches over k0..k299; every 5th batch also deletes 5 keys; every 7th message's record
# is too large for NOTIFY. The listener's connection is terminated after batches 6 and 13.
my $kills = 0;
for my $batch (1 .. 20)
{
	my @msgs;
	for my $i (0 .. 39)
	{
		my $k = ($batch * 37 + $i * 11) % 300;
		my $note = ($batch * 40 + $i) % 7 == 0 ? qq(, "note": "$big") : '';
		push @msgs, qq({"id": "k$k", "v": @{[ $batch * 100 + $i ]}$note});
	}
	push @msgs, qq({"id": "k7", "v": $batch}), qq({"id": "$long_key", "v": $batch});
	ingest(@msgs);
	delete_keys(map { 'k' . (($batch * 13 + $_ * 29) % 300) } 0 .. 4) if $batch % 5 == 0;
	if ($batch == 6 || $batch == 13)
	{
		my $pid;
		ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listen-a'", '1'),
			"listen-a connected before kill " . ($kills + 1));
		$pid = backend_of('listen-a');
		is(sql($node, "SELECT pg_terminate_backend($pid)"), 't', "listen-a's backend terminated");
		$kills++;
	}
}
ingest(qq({"id": "k7", "v": 1000}), qq({"id": "k8", "v": 1000, "note": "$big"}));

my $final = seq_now();
for my $l ($la, $lr)
{
	ok(wait_events($l, "seq $final", sub { shown_seq(@_) >= $final }), "$l->{name}: caught up to seq $final");
}
my %key_seq = map { $_ => sql($node, 'SELECT seq FROM tributary.snapshot(' . sql_literal('s') . ', '
	. sql_literal($_) . ')') } ('k7', $long_key);
for my $pair ([ $lb, 'k7' ], [ $lc, $long_key ])
{
	my ($l, $k) = @$pair;
	ok(wait_events($l, "seq $key_seq{$k}", sub { grep { ($_->{seq} // 0) == $key_seq{$k} } @_ }),
		"$l->{name}: caught up to its key's seq");
}

my ($rc, $state, @ev) = stop_listener($la);
is($rc, 0, 'listen-a: exit status 0 on SIGTERM');
is(state_differs($state, 's'), '0 of ' . sql($node, q{SELECT count(*) FROM tributary.snapshot('s')}),
	'listen-a: the final state equals tributary.snapshot() exactly');
is(decode_json($state)->{seq}, $final, 'listen-a: the final state is at the stream seq');
is(join(',', map { $_->{reason} } grep { $_->{event} eq 'resync' } @ev), 'reconnect,reconnect',
	'listen-a: two reconnects, and no gap, resync or heartbeat re-hydration');
is(scalar(grep { $_->{event} eq 'hydrate' } @ev), 3, 'listen-a: hydrated at the start and after each reconnect');
ok((grep { $_->{event} eq 'upsert' && $_->{reread} && length($_->{record}{note} // '') == 9000 } @ev),
	'listen-a: a record too large for NOTIFY was re-read');
ok((grep { $_->{event} eq 'delete' } @ev), 'listen-a: deletes were followed');
my @seqs = map { $_->{seq} } grep { $_->{event} =~ /^(upsert|delete)$/ && !$_->{reread} } @ev;
is(scalar(grep { $seqs[$_] <= $seqs[ $_ - 1 ] } 1 .. $#seqs), 0, 'listen-a: changes printed in increasing seq order');

($rc, $state, @ev) = stop_listener($lr);
is(state_differs($state, 's'), '0 of ' . sql($node, q{SELECT count(*) FROM tributary.snapshot('s')}),
	'a role with SELECT on the target: the final state equals the snapshot');

for my $pair ([ $lb, 'k7' ], [ $lc, $long_key ])
{
	my ($l, $k) = @$pair;
	($rc, $state, @ev) = stop_listener($l);
	is($rc, 0, "$l->{name}: exit status 0");
	is(state_differs($state, 's', $k), '0 of 1', "$l->{name}: the final state equals the key's snapshot");
	is(scalar(grep { defined $_->{key} && $_->{key} ne $k } @ev), 0, "$l->{name}: nothing of other keys");
	cmp_ok(scalar(grep { $_->{event} eq 'upsert' } @ev), '>=', 2, "$l->{name}: followed its key's upserts");
}

# ---------------------------------------------------------------------------------------
# Resync, gap, heartbeat: the client re-hydrates and ends equal to the snapshot.

my $ld = listener('listen-d', '--stream', 's');
ok(wait_events($ld, 'the hydration', sub { grep { $_->{event} eq 'hydrate' } @_ }), 'listen-d: hydrated');

# Notifications skipped while the queue is "full": a resync comes with the next batch.
sql($node, q{SET tributary.fanout_queue_limit = 0;
	SELECT tributary.ingest('s', '{"id": "k1", "v": -1}'::jsonb);});
ok(sql($node, q{SELECT notifications_skipped > 0 FROM tributary.stream_stats WHERE stream = 's' AND topic IS NULL}),
	'the server skipped a notification');
ingest('{"id": "k2", "v": -2}');
ok(wait_events($ld, 'a resync', sub { grep { $_->{event} eq 'resync' && $_->{reason} eq 'resync' } @_ }),
	'listen-d: a resync after skipped notifications');

# Fan-out off while a change commits, on again without heartbeats: the next change's seq jumps.
sql($node, q{SELECT tributary.drop_fanout('s')});
ingest('{"id": "k3", "v": -3}');
sql($node, q{SELECT tributary.set_fanout('s', heartbeat => null)});
ingest('{"id": "k4", "v": -4}');
ok(wait_events($ld, 'a gap', sub { grep { $_->{event} eq 'resync' && $_->{reason} eq 'gap' } @_ }),
	'listen-d: a gap in the seqs re-hydrates');

# Payloads that are not JSON, or an old seq with a forged record: ignored (no re-hydration,
# the forged record never reaches the state).
sql($node, q{SELECT pg_notify('tributary.s', 'not json'), pg_notify('tributary.s', '{"stream":"s","seq":1,,}'),
	pg_notify('tributary.s', '{"stream":"s","key":"k1","seq":1,"op":"upsert","record":{"forged":true}}')});

# Fan-out off while a change commits, on again with heartbeats: the heartbeat's seq is newer.
sql($node, q{SELECT tributary.drop_fanout('s')});
ingest('{"id": "k5", "v": -5}');
sql($node, q{SELECT tributary.set_fanout('s', heartbeat => '1 s')});
my $hb_seq = seq_now();
ok(wait_events($ld, 'a heartbeat re-hydration',
	sub { grep { $_->{event} eq 'resync' && $_->{reason} eq 'heartbeat' } @_ }),
	'listen-d: a heartbeat newer than its state re-hydrates');
ok(wait_events($ld, "seq $hb_seq", sub { shown_seq(@_) >= $hb_seq }), 'listen-d: caught up');
($rc, $state, @ev) = stop_listener($ld);
is(join(',', map { $_->{reason} } grep { $_->{event} eq 'resync' } @ev), 'resync,gap,heartbeat',
	'listen-d: re-hydrated for exactly these reasons');
is(scalar(() = slurp($ld->{err}) =~ /notification that is not valid JSON/g), 2, 'listen-d: both invalid payloads reported');
is(scalar(grep { ($_->{record} // {})->{forged} } @ev), 0, 'listen-d: the forged old change was not applied');
is(state_differs($state, 's'), '0 of ' . sql($node, q{SELECT count(*) FROM tributary.snapshot('s')}),
	'listen-d: the final state equals the snapshot');

# ---------------------------------------------------------------------------------------
# --exit-after and --idle-exit.

my $le = listener('listen-e', '--stream', 's', '--exit-after', '2');
ok(wait_events($le, 'the hydration', sub { grep { $_->{event} eq 'hydrate' } @_ }), 'listen-e: hydrated');
ingest('{"id": "k10", "v": 10}', '{"id": "k11", "v": 11}');
($rc, $state, @ev) = stop_listener($le, 1);
is($rc, 0, '--exit-after 2: exits by itself with status 0');
my @e_lines = lines($le);
like($e_lines[-1], qr/^\{"event":"state","stream":"s","seq":\d+,"keys":\{/, '--exit-after: ends with the state line');
is(scalar(grep { /"event":"(upsert|delete)"/ } @e_lines), 2, '--exit-after 2: after two changes');

my $lf = listener('listen-f', '--stream', 's', '--key', 'k10', '--idle-exit', '0.5');
($rc, $state, @ev) = stop_listener($lf, 1);
is($rc, 0, '--idle-exit: exits by itself with status 0');
is(state_differs($state, 's', 'k10'), '0 of 1', '--idle-exit: the state line holds the key');

# ---------------------------------------------------------------------------------------
# Quality windows and alerts.

sql($node, q{
	CREATE TABLE readings (id text, at timestamptz, value float8);
	SELECT tributary.create_stream('q', 'readings', 'local', '{"format": "json"}',
		key => 'id', event_time => 'at');
	SELECT tributary.set_snapshot('q');
	SELECT tributary.set_fanout('q');
	SELECT tributary.set_quality('q', '1 minute', thresholds => '{"rows": 5}');
});
my $lg = listener('listen-g', '--stream', 'q', '--quality', '--alerts');
my $lh = listener('listen-h', '--alerts');
ok(wait_events($lg, 'the hydration', sub { grep { $_->{event} eq 'hydrate' } @_ }), 'listen-g: hydrated');
ok(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listen-h'
	                 AND state = 'idle'}, '1'), 'listen-h: connected');
sql($node, q{SELECT tributary.ingest('q', ARRAY['{"id": "r1", "at": "2026-01-01T10:00:01Z", "value": 1}',
	'{"id": "r2", "at": "2026-01-01T10:00:02Z", "value": 2}',
	'{"id": "r3", "at": "2026-01-01T10:01:30Z", "value": 3}']::jsonb[])});
ok(wait_events($lg, 'a quality window', sub { grep { $_->{event} eq 'quality' } @_ }),
	'listen-g: a closed window');
ok(wait_events($lg, 'an alert', sub { grep { $_->{event} eq 'alert' } @_ }), 'listen-g: its alert');
ok(wait_events($lh, 'an alert', sub { grep { $_->{event} eq 'alert' } @_ }), 'listen-h (--alerts alone): the alert');
($rc, $state, @ev) = stop_listener($lg);
my ($qw) = grep { $_->{event} eq 'quality' } @ev;
is("$qw->{stream} $qw->{rows} " . sql($node, 'SELECT ' . sql_literal($qw->{window_start})
	  . q{::timestamptz = '2026-01-01 10:00+00'}), 'q 2 t', 'listen-g: the quality line is the window\'s payload');
my ($al) = grep { $_->{event} eq 'alert' } @ev;
is("$al->{stream} $al->{kind}", 'q raised', 'listen-g: the alert line is the alert\'s payload');
is(state_differs($state, 'q'), '0 of 3', 'listen-g: the state equals the snapshot of q');
my (undef, $hstate, @hev) = stop_listener($lh);
ok(!defined $hstate, 'listen-h: no state line without --stream');
is(scalar(grep { $_->{event} eq 'alert' } @hev), 1, 'listen-h: one alert');

# ---------------------------------------------------------------------------------------
# A Kafka stream: upserts and tombstones from two partitions, the listener's backend
# terminated between the two halves.

my $bs = $kafka->bootstrap;
sql($node, qq{
	CREATE TABLE kf_rows (id text, v int);
	SELECT tributary.create_stream('kf', 'kf_rows', 'kafka',
		'{"brokers": "$bs", "topic": "kf", "batch_size": 500, "batch_ms": 10}', key => 'id');
	SELECT tributary.set_snapshot('kf');
	SELECT tributary.set_fanout('kf', '{stream}');
});
my $lk = listener('listen-k', '--stream', 'kf');
ok(wait_events($lk, 'the hydration', sub { grep { $_->{event} eq 'hydrate' } @_ }), 'listen-k: hydrated');

# The newest seq the listener printed, from its last lines only (its output grows to 100,000
# lines: decoding all of it on every poll would take longer than the stream).
sub tail_seq
{
	my ($l) = @_;
	my @tail = (lines($l))[-20 .. -1];
	my $seq = -1;
	for my $line (grep { defined } @tail)
	{
		my $e = decode_json($line);
		next unless $e->{event} =~ /^(hydrate|upsert|delete)$/;
		my $s = $e->{reread} ? $e->{notified_seq} : $e->{seq};
		$seq = $s if $s > $seq;
	}
	return $seq;
}

# 100,000 messages over 1,000 keys: key "f<i % 1000>", partition by key (so each key's
# messages stay in order); every 50th message a tombstone of key f<(i / 50) * 7 % 1000>. Produced in three parts; the
# listener's backend is terminated after the first and after the second.
my $n = 100_000;
my ($rows, @parts, %deleted) = (0);
for my $i (1 .. $n)
{
	my $tomb = $i % 50 == 0;
	my $ki = $tomb ? int($i / 50) * 7 % 1000 : $i % 1000;	# a tombstone deletes another key
	my $k = "f$ki";
	my $msg = $tomb ? [ $k, '' ] : [ $k, qq({"id":"$k","v":$i}) ];
	$rows++ unless $tomb;
	$deleted{$k} = $tomb;
	push @{ $parts[ int(($i - 1) * 3 / $n) ][ $ki % 4 ] }, $msg;
}
for my $part (0 .. 2)
{
	kcat_produce($bs, 'kf', $parts[$part][$_], partition => $_, keys => 1, tombstones => 1)
	  for grep { $parts[$part][$_] } 0 .. 3;
	next if $part == 2;
	my $landed = int($rows * ($part + 1) / 3 / 2);
	ok(wait_for($node, "SELECT count(*) >= $landed FROM kf_rows", 't', 120), "kafka: part $part is landing");
	ok(wait_for($node, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listen-k'", '1'),
		"listen-k connected before termination $part");
	is(sql($node, 'SELECT pg_terminate_backend(' . backend_of('listen-k') . ')'), 't',
		"listen-k's backend terminated mid-stream ($part)");
}
ok(wait_for($node, 'SELECT count(*) FROM kf_rows', $rows, 180), "kafka: all $rows rows landed");
my $kseq = sql($node, q{SELECT tributary.snapshot_seq('kf')});
my $deadline = time + $timeout;
usleep(200_000) while tail_seq($lk) < $kseq && time < $deadline;
is(tail_seq($lk) >= $kseq ? 'caught up' : tail_seq($lk), 'caught up', "listen-k: caught up to seq $kseq");
$lk->{h}->signal('TERM');
$lk->{h}->finish;
my $out = slurp($lk->{out});
my ($kstate) = $out =~ /^(\{"event":"state".*)$/m;
is(state_differs($kstate, 'kf'), '0 of ' . sql($node, q{SELECT count(*) FROM tributary.snapshot('kf')}),
	'listen-k: after 100,000 updates and two terminated connections, its state equals the snapshot');
is(sql($node, q{SELECT count(*) FROM tributary.snapshot('kf')}), scalar(grep { !$_ } values %deleted),
	'kafka: the keys whose last message is a tombstone are gone, the others live');
my $reconnects = () = $out =~ /"event":"resync"[^\n]*"reason":"reconnect"/g;
is($reconnects, 2, 'listen-k: two reconnects');
ok($out =~ /"event":"delete"/, 'listen-k: tombstones arrived as deletes');

done_testing();
