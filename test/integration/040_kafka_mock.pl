# The local Kafka broker (tools/tributary-kafka-mock) with kcat, a client the project did
# not write, as producer and consumer: 4 partitions x 250 messages with awkward bytes and
# keys come back exactly; metadata is right; a broker taken down makes produces to its
# partitions fail and a live client recovers after it comes back up; latency and run-time
# topics are applied; bad commands and arguments are refused; the mock stops cleanly and
# also exits by itself when its parent dies. No PostgreSQL node is needed.
use strict;
use warnings;

use IPC::Run ();
use Test::More;
use Time::HiRes qw(time sleep);
use TributaryKafka;

my $kafka = kafka_mock_start(brokers => 3, topics => { t => 4 });
my $bs = $kafka->bootstrap;
like($bs, qr/^127\.0\.0\.1:\d+(?:,127\.0\.0\.1:\d+){2}$/, "bootstrap lists 3 brokers: $bs");

# ---------------------------------------------------------------------------------------
# Metadata: 4 partitions, 3 brokers; remember who leads what for the fault tests.
my $md = kcat_metadata($bs, 't');
is(scalar @{ $md->{brokers} }, 3, 'metadata: 3 brokers');
my ($tmd) = grep { $_->{topic} eq 't' } @{ $md->{topics} };
ok($tmd, 'metadata: topic t');
is(scalar @{ $tmd->{partitions} }, 4, 'metadata: topic t has 4 partitions');
my %leader = map { ($_->{partition} => $_->{leader}) } @{ $tmd->{partitions} };
is_deeply(\%leader, { 0 => 1, 1 => 2, 2 => 3, 3 => 1 },
	'metadata: partition P is led by broker (P mod 3) + 1');

# ---------------------------------------------------------------------------------------
# 250 messages per partition, one kcat call per partition. Partitions 0 and 1 get unkeyed
# messages full of newlines, tabs, quotes, backslashes, NUL and UTF-8; 2 and 3 get keyed
# ones (some NULL keys, empty keys and empty values), 3 also with headers.
my @awkward = ("line one\nline two", "tab\there", q{"double" and 'single'},
	'back\\slash \\n not a newline', "trailing newline\n", "\n", "nul\0byte", "caf\xc3\xa9",
	'{"json": "with \\"escapes\\" and \\\\"}', "cr\r\nlf", ' ');
my %sent;    # partition => [ [key, value], ... ] in produce order
for my $p (0 .. 3)
{
	my @msgs;
	for my $i (0 .. 249)
	{
		my $v = "p$p-m$i " . $awkward[ $i % @awkward ];
		if ($p < 2) { push @msgs, [ undef, $v ]; next; }
		my $k = $i % 7 == 0 ? undef : $i % 11 == 0 ? '' : "key-$p-\"$i\"\t\\";
		$v = '' if $i % 13 == 0 && defined $k;
		push @msgs, [ $k, $v ];
	}
	$sent{$p} = \@msgs;
	my $t0 = time;
	if ($p < 2)
	{
		kcat_produce($bs, 't', [ map { $_->[1] } @msgs ], partition => $p);
	}
	else
	{
		kcat_produce($bs, 't', \@msgs, partition => $p, keys => 1,
			$p == 3 ? (headers => [ source => 'test', 'h2' => 'a=b' ]) : ());
	}
	note(sprintf('produce of 250 messages to t [%d]: %.3f s', $p, time - $t0));
}

for my $p (0 .. 3)
{
	is(kcat_count($bs, 't', $p), 250, "t [$p]: kcat_count is 250");

	my $t0 = time;
	my @got = kcat_consume($bs, 't', $p);
	note(sprintf('consume of t [%d]: %.3f s', $p, time - $t0));
	is(scalar @got, 250, "t [$p]: 250 messages consumed");
	is_deeply([ map { $_->{offset} } @got ], [ 0 .. 249 ], "t [$p]: offsets 0..249 in order");
	is_deeply([ map { [ $_->{key}, $_->{value} ] } @got ], $sent{$p},
		"t [$p]: every key and value arrived byte for byte");
	my %hdrs = map { ($_->{headers} => 1) } @got;
	is_deeply([ keys %hdrs ], [ $p == 3 ? 'source=test,h2=a=b' : '' ], "t [$p]: headers");
	ok(!(grep { $_->{partition} != $p } @got), "t [$p]: all from partition $p");
}

# ---------------------------------------------------------------------------------------
# Control commands that must be refused, with the mock still answering afterwards.
ok(!$kafka->control('bogus 1'), 'unknown command refused');
like($kafka->last_reply, qr/^error bogus 1: unknown command/, '... with a reason');
ok(!$kafka->control('down 4'), 'broker id out of range refused');
ok(!$kafka->control('rtt 1 fast'), 'non-numeric rtt refused');
ok(!$kafka->control('topic bad/name 2'), 'invalid topic name refused');
ok(!$kafka->control('topic-error t NO_SUCH_ERROR'), 'unknown error name refused');
ok(!$kafka->control('topic-error t'), 'topic-error without an error refused');

# ---------------------------------------------------------------------------------------
# Broker 1 down: produces to its partitions time out, other brokers' partitions still
# work; a client that keeps retrying delivers once the broker is back up.
my ($p1, $p2) = (0, 1);    # led by brokers 1 and 2

ok($kafka->control('down 1'), 'down 1 acknowledged');
my $t0 = time;
ok(!eval { kcat_produce($bs, 't', ['while down'], partition => $p1, timeout_ms => 1500); 1 },
	"produce to t [$p1] (led by the down broker) fails");
like($@, qr/Message timed out|brokers are down|transport failure/i, '... with a delivery error');
note(sprintf('failed produce took %.3f s', time - $t0));
ok(eval { kcat_produce($bs, 't', ['other broker'], partition => $p2, timeout_ms => 5000); 1 },
	"produce to t [$p2] (led by a live broker) works meanwhile") or diag($@);

# A producer started while broker 1 is down, retrying (-E) for up to 20 s.
my ($kout, $kerr) = ('', '');
my $retrying = IPC::Run::start(
	[ 'kcat', '-P', '-b', $bs, '-t', 't', '-p', $p1, '-E', '-q',
		'-X', 'linger.ms=5', '-X', 'message.timeout.ms=20000' ],
	'<', \"after up\n", '>', \$kout, '2>', \$kerr);
sleep 1;
ok($kafka->control('up 1'), 'up 1 acknowledged');
$t0 = time;
$retrying->finish;
is($? >> 8, 0, 'the retrying producer delivered after up 1') or diag($kerr);
note(sprintf('retrying producer finished %.3f s after up 1', time - $t0));
ok(eval { kcat_produce($bs, 't', ['fresh after up'], partition => $p1, timeout_ms => 5000); 1 },
	"a new produce to t [$p1] works after up 1") or diag($@);
is_deeply([ map { $_->{value} } kcat_consume($bs, 't', $p1, offset => 250) ],
	[ 'after up', 'fresh after up' ], "t [$p1]: only the messages sent while up landed");

# ---------------------------------------------------------------------------------------
# Latency on broker 1: acknowledged, and a produce to its partition takes at least 300 ms.
ok($kafka->control('rtt 1 300'), 'rtt 1 300 acknowledged');
$t0 = time;
kcat_produce($bs, 't', ['slow'], partition => $p1);
my $slow = time - $t0;
cmp_ok($slow, '>=', 0.3, sprintf('produce via broker 1 with rtt 300 took %.3f s', $slow));
ok($kafka->control('rtt 1 0'), 'rtt 1 0 acknowledged');

# ---------------------------------------------------------------------------------------
# A topic created at run time.
ok($kafka->control('topic t2 2'), 'topic t2 2 acknowledged');
ok(!$kafka->control('topic t2 2'), 'creating t2 again is refused');
like($kafka->last_reply, qr/^error topic t2 2: .*exists/i, '... because it exists');
my $md2 = kcat_metadata($bs, 't2');
my ($t2md) = grep { $_->{topic} eq 't2' } @{ $md2->{topics} };
is(scalar @{ $t2md->{partitions} || [] }, 2, 'metadata: t2 has 2 partitions');
for my $p (0, 1)
{
	kcat_produce($bs, 't2', [ map { "t2 p$p #$_\nsecond line" } 1 .. 10 ], partition => $p);
	is_deeply([ map { $_->{value} } kcat_consume($bs, 't2', $p) ],
		[ map { "t2 p$p #$_\nsecond line" } 1 .. 10 ], "t2 [$p]: 10 messages round trip");
}

# ---------------------------------------------------------------------------------------
# A topic error: metadata says the topic does not exist, until the error is cleared.
ok($kafka->control('topic-error t2 UNKNOWN_TOPIC_OR_PART'), 'topic-error t2 acknowledged');
($t2md) = grep { $_->{topic} eq 't2' } @{ kcat_metadata($bs, 't2')->{topics} };
like($t2md->{error} // '', qr/unknown topic/i, 'metadata: t2 is an unknown topic');
ok($kafka->control('topic-error t2 NO_ERROR'), 'topic-error t2 NO_ERROR acknowledged');
($t2md) = grep { $_->{topic} eq 't2' } @{ kcat_metadata($bs, 't2')->{topics} };
is(scalar @{ $t2md->{partitions} || [] }, 2, 'metadata: t2 is back with its 2 partitions');

# ---------------------------------------------------------------------------------------
# Stop: exit status 0 on SIGTERM, no process left, FIFO removed.
my $pid = $kafka->pid;
ok(kill(0, $pid), "mock runs as pid $pid");
ok($kafka->stop, 'stop(): exited 0 on SIGTERM')
  or diag('exit status ' . ($kafka->exit_status // 'unknown') . "; stderr:\n" . $kafka->stderr);
ok(!kill(0, $pid), 'no process left after stop()');
ok(!-e "$kafka->{dir}/control", 'control FIFO removed');
ok($kafka->stop, 'stop() again is harmless');
like($kafka->stderr, qr/\Atributary-kafka-mock: Terminated from pid $$, stopping\n\z/,
	'stderr: only the note of who stopped it');

# ---------------------------------------------------------------------------------------
# Bad command lines: non-zero exit and a clear message on stderr.
my $bin = kafka_mock_binary();
for my $case ([ [ '--brokers', '0' ], qr/--brokers "0": must be an integer/ ],
	[ [ '--topic', 'nopartitions' ], qr/expected NAME:PARTITIONS/ ],
	[ [ '--topic', 'x:0' ], qr/PARTITIONS must be an integer/ ],
	[ [ '--bogus' ], qr/unknown argument "--bogus"/ ])
{
	my ($args, $re) = @$case;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, @$args ], '<', \undef, '>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	ok($rc != 0 && $err =~ $re && $out eq '', "bad arguments (@$args) refused")
	  or diag("exit $rc, stdout: $out, stderr: $err");
}

# ---------------------------------------------------------------------------------------
# A mock whose parent is killed with SIGKILL exits by itself.
my $wout = '';
my $wtimer = IPC::Run::timer(10);
my $wrapper = IPC::Run::start([ 'sh', '-c', '"$0" >/dev/null 2>&1 & echo $!; wait', $bin ],
	'<', \undef, '>', \$wout, $wtimer);
$wtimer->start;
$wrapper->pump until $wout =~ /^\d+\n/ || $wtimer->is_expired;
my ($orphan) = $wout =~ /^(\d+)\n/ or BAIL_OUT('the wrapper shell printed no pid');
sleep 0.2;
ok(kill(0, $orphan), "wrapped mock runs as pid $orphan");
$wrapper->signal('KILL');
$wrapper->finish;
my $gone = 0;
for (1 .. 100)
{
	# Gone, or a zombie waiting for a reaper that may not reap (PID 1 in a container).
	my $stat = '';
	if (open(my $fh, '<', "/proc/$orphan/stat")) { $stat = <$fh> // ''; close $fh; }
	if (!kill(0, $orphan) || $stat =~ /^\d+ \(.*\) Z/) { $gone = 1; last; }
	sleep 0.05;
}
ok($gone, 'the mock exited after its parent was killed with SIGKILL');

done_testing();
