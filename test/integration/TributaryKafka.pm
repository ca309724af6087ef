# test/integration/TributaryKafka.pm: a local Kafka broker and kcat for tributary's
# integration tests.
#
# The broker is tools/tributary-kafka-mock (librdkafka's mock cluster as a program, see
# tools/kafka_mock.c); the client is kcat, which the project did not write. Nothing here
# needs a PostgreSQL node, so this module can be used with or without TributaryTest.
#
#   use TributaryKafka;
#
#   my $kafka = kafka_mock_start(brokers => 1, topics => { orders => 4 });
#   my $bs = $kafka->bootstrap;                       # "127.0.0.1:PORT[,...]"
#   kcat_produce($bs, 'orders', [ '{"id": 1}', "two\nlines" ], partition => 0);
#   kcat_produce($bs, 'orders', [ [ 'k1', 'v1' ], [ undef, 'no key' ] ], keys => 1);
#   is(kcat_count($bs, 'orders', 0), 2, 'both landed');
#   my @msgs = kcat_consume($bs, 'orders', 0);       # [{ offset, key, value, ... }, ...]
#   ok($kafka->control('down 1'), 'broker 1 down');  # waits for the mock's answer
#   $kafka->stop;                                     # also done by DESTROY and at END
#
# Exports:
#   kafka_mock_start(%opts)     start a mock cluster, wait for its bootstrap line and
#                               return an object (below). Options:
#       brokers  => N           brokers, ids 1..N (default 1)
#       topics   => { name => partitions, ... }   topics created at start
#       timeout  => seconds     for start and for each control answer (default 30)
#     The binary is $ENV{TRIB_KAFKA_MOCK} if set, else ../../tools/tributary-kafka-mock
#     from this file's directory. Its stdout (answers) is read through a pipe, its stderr
#     goes to a file (see ->stderr) so librdkafka logging can never block it.
#   Methods:
#     ->bootstrap               the bootstrap.servers string
#     ->control($cmd)           send one command (down ID | up ID | rtt ID MS |
#                               topic NAME PARTITIONS), wait for its answer; true when
#                               the answer is "ok", false on "error" (->last_reply has
#                               the answer line). Dies when no answer comes in time.
#     ->stop                    SIGTERM and wait (SIGKILL after 10 s); true when it exited
#                               0 on the SIGTERM. Idempotent.
#     ->pid, ->stderr           process id; what it wrote to stderr so far
#     ->exit_status             wait status after stop (0: clean exit)
#   kafka_mock_binary()         path of the mock binary (as above)
#   kcat_produce($bootstrap, $topic, \@messages, %opts)
#       produce with one `kcat -P` run and wait for every delivery; dies with kcat's
#       stderr when kcat fails. Messages are split with -D "\x1e" (so they may hold
#       newlines, tabs, anything but \x1e) and are never empty (kcat -P skips empty
#       messages). Options:
#       partition => P          -p P (default: kcat's partitioner)
#       keys      => 1          each message is [key, value]; key undef means a NULL key;
#                               split with -K "\x1f" (keys must not contain \x1f)
#       headers   => [ k => v, ... ] or { k => v }   -H k=v on every message of the call
#       timeout_ms => N         message.timeout.ms (default 10000)
#       tombstones => 1         kcat -Z: a keyed message with an empty value is sent with a
#                               NULL value (a tombstone, as compacted topics carry)
#       keep_going => 1         kcat -E: do not give up when all brokers are down, retry
#                               until message.timeout.ms
#       x         => { prop => value }   more librdkafka properties (-X)
#   kcat_produce_dealt($bootstrap, $topic, $partitions, \@ids, $make)
#       the message $make->($id) of each id to partition $id % $partitions, in the order
#       of @ids within a partition; one kcat_produce per partition.
#   kcat_produce_ids($bootstrap, $topic, $from, $to, %opts)
#       the messages {"id": N} for N in [$from, $to]: with partitions => P, dealt as
#       kcat_produce_dealt does (N % P); without, in one kcat_produce (kcat's partitioner).
#   kcat_count($bootstrap, $topic, $partition)
#       number of messages currently in the partition (consumed from the log start).
#   kcat_consume($bootstrap, $topic, $partition, %opts)
#       the partition's messages from the log start (or offset => N) to its end, as a list
#       of { partition, offset, timestamp, key, value, headers } (key/value undef for
#       NULL, headers as kcat's "n=v,n=v" text); count => N stops after N messages.
#   kcat_metadata($bootstrap, $topic)
#       `kcat -L -J` decoded: { brokers => [...], topics => [ { topic, partitions => [...] } ] }
#   kcat_run(\@args, $stdin)    run kcat with @args (after -b etc.), return
#                               (exit status, stdout, stderr); for anything not above.

package TributaryKafka;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use Fcntl qw(O_WRONLY O_NONBLOCK);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp ();
use IPC::Run ();
use JSON::PP ();
use Scalar::Util qw(weaken refaddr);
use Time::HiRes ();

our @EXPORT = qw(kafka_mock_start kafka_mock_binary kcat_produce kcat_produce_dealt
  kcat_produce_ids kcat_count kcat_consume kcat_metadata kcat_run);

my $MSG_SEP = "\x1e";    # between messages (-D)
my $KEY_SEP = "\x1f";    # between key and value (-K)

# Every mock still running, weakly, so END can stop those a dying test left behind.
my %live;

sub kafka_mock_binary
{
	return $ENV{TRIB_KAFKA_MOCK} if defined $ENV{TRIB_KAFKA_MOCK} && $ENV{TRIB_KAFKA_MOCK} ne '';
	my $here = dirname(File::Spec->rel2abs(__FILE__));
	return File::Spec->catfile($here, '..', '..', 'tools', 'tributary-kafka-mock');
}

sub kafka_mock_start
{
	my (%opts) = @_;
	my $brokers = defined $opts{brokers} ? $opts{brokers} : 1;
	my $topics = $opts{topics} || {};
	my $timeout = defined $opts{timeout} ? $opts{timeout} : 30;
	my $bin = kafka_mock_binary();
	croak "kafka mock binary $bin is missing or not executable (make tools, or set TRIB_KAFKA_MOCK)"
	  unless -x $bin;

	my $dir = File::Temp::tempdir('kafka-mock-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my @cmd = ($bin, '--brokers', $brokers, '--control', "$dir/control");
	push @cmd, '--topic', "$_:$topics->{$_}" for sort keys %$topics;

	my $self = bless {
		dir => $dir,
		timeout => $timeout,
		out => '',
		seen => 0,
		owner => $$,
		running => 0,
	}, __PACKAGE__;
	$self->{timer} = IPC::Run::timer($timeout);
	$self->{h} = IPC::Run::start(\@cmd, '<', \undef, '>', \$self->{out},
		'2>', "$dir/stderr", $self->{timer});
	$self->{running} = 1;
	$self->{pid} = $self->{h}{KIDS}[0]{PID};
	$live{ refaddr($self) } = $self;
	weaken($live{ refaddr($self) });

	my $line = $self->_wait_line(qr/^bootstrap=(\S+)$/m);
	unless (defined $line)
	{
		my $err = $self->stderr;
		$self->stop;
		croak "kafka mock (@cmd) gave no bootstrap line within ${timeout}s; stderr:\n$err";
	}
	($self->{bootstrap}) = $line =~ /^bootstrap=(\S+)$/;
	return $self;
}

# Pump the mock's stdout until a line after what was already consumed matches $re; return
# that line (and consume up to it), or undef on timeout or exit.
sub _wait_line
{
	my ($self, $re) = @_;
	$self->{timer}->start($self->{timeout});
	for (;;)
	{
		pos($self->{out}) = $self->{seen};
		while ($self->{out} =~ /\G([^\n]*)\n/gc)
		{
			my $l = $1;
			$self->{seen} = pos($self->{out});
			return $l if $l =~ $re;
		}
		return undef if $self->{timer}->is_expired;
		my $ok = eval { $self->{h}->pump; 1 };
		return undef unless $ok && $self->{h}->pumpable;
	}
}

sub bootstrap { return $_[0]->{bootstrap}; }
sub pid { return $_[0]->{pid}; }
sub last_reply { return $_[0]->{last_reply}; }
sub exit_status { return $_[0]->{exit_status}; }

sub stderr
{
	my ($self) = @_;
	open(my $fh, '<', "$self->{dir}/stderr") or return '';
	local $/;
	my $s = <$fh>;
	close $fh;
	return defined $s ? $s : '';
}

sub control
{
	my ($self, $cmd) = @_;
	croak "kafka mock is not running" unless $self->{running};
	$cmd =~ s/^\s+|\s+$//g;
	croak "control command must be one non-empty line" if $cmd eq '' || $cmd =~ /\n/;

	# Non-blocking open: fails at once (ENXIO) instead of hanging if the mock is gone.
	sysopen(my $fh, "$self->{dir}/control", O_WRONLY | O_NONBLOCK)
	  or croak "cannot open the kafka mock's control FIFO: $!";
	my $n = syswrite($fh, "$cmd\n");
	croak "cannot write to the kafka mock's control FIFO: $!" unless defined $n && $n == length($cmd) + 1;
	close $fh;

	my $line = $self->_wait_line(qr/^(?:ok \Q$cmd\E|error \Q$cmd\E: .*)$/);
	croak "kafka mock did not answer \"$cmd\" within $self->{timeout}s; stderr:\n" . $self->stderr
	  unless defined $line;
	$self->{last_reply} = $line;
	return $line =~ /^ok / ? 1 : 0;
}

sub stop
{
	my ($self) = @_;
	# Reaping sets $?; when called from END or DESTROY that would be the test's exit code.
	local ($?, $@);
	return $self->{stopped_ok} unless $self->{running};
	$self->{running} = 0;
	delete $live{ refaddr($self) };
	# kill_kill: SIGTERM, wait up to 10 s, then SIGKILL; returns true when it had to KILL.
	my $killed = $self->{h}->kill_kill(grace => 10);
	my $status = eval { $self->{h}->full_result(0) };
	$self->{exit_status} = $status;
	$self->{stopped_ok} = (!$killed && defined $status && $status == 0) ? 1 : 0;
	return $self->{stopped_ok};
}

sub DESTROY
{
	my ($self) = @_;
	# Not in a forked child (IPC::Run forks to run kcat): the mock belongs to its parent.
	$self->stop if $self->{running} && $self->{owner} == $$;
}

END
{
	for my $m (values %live)
	{
		$m->stop if defined $m && $m->{running} && $m->{owner} == $$;
	}
}

# ---------------------------------------------------------------------------------------
# kcat

sub kcat_run
{
	my ($args, $stdin) = @_;
	my ($out, $err) = ('', '');
	$stdin = '' unless defined $stdin;
	IPC::Run::run([ 'kcat', @$args ], '<', \$stdin, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub kcat_produce
{
	my ($bootstrap, $topic, $messages, %opts) = @_;
	my @args = ('-P', '-b', $bootstrap, '-t', $topic, '-D', '\x1e',
		'-X', 'linger.ms=5',
		'-X', 'message.timeout.ms=' . (defined $opts{timeout_ms} ? $opts{timeout_ms} : 10000));
	push @args, '-p', $opts{partition} if defined $opts{partition};
	push @args, '-K', '\x1f' if $opts{keys};
	push @args, '-E' if $opts{keep_going};
	push @args, '-Z' if $opts{tombstones};
	my $h = $opts{headers};
	my @hdr = !defined $h ? () : ref $h eq 'HASH' ? (map { ($_, $h->{$_}) } sort keys %$h) : @$h;
	while (my ($k, $v) = splice(@hdr, 0, 2))
	{
		push @args, '-H', "$k=$v";
	}
	push @args, '-X', "$_=$opts{x}{$_}" for sort keys %{ $opts{x} || {} };

	my $input = '';
	for my $m (@$messages)
	{
		my ($key, $value) = $opts{keys} ? @$m : (undef, $m);
		croak "kcat_produce: undefined value" unless defined $value;
		croak "kcat_produce: message contains the separator \\x1e" if $value =~ /\x1e/;
		if (defined $key)
		{
			croak "kcat_produce: key contains \\x1f or \\x1e" if $key =~ /[\x1e\x1f]/;
			$input .= $key . $KEY_SEP . $value . $MSG_SEP;
		}
		else
		{
			croak "kcat_produce: kcat -P skips empty messages" if $value eq '';
			croak "kcat_produce: an unkeyed value with \\x1f would be split by -K"
			  if $opts{keys} && $value =~ /\x1f/;
			$input .= $value . $MSG_SEP;
		}
	}

	my ($rc, $out, $err) = kcat_run(\@args, $input);
	croak "kcat_produce to $topic failed (exit $rc): $err" if $rc != 0;
	return 1;
}

sub kcat_consume
{
	my ($bootstrap, $topic, $partition, %opts) = @_;
	# Lengths first, so key and payload bytes need no escaping at all.
	my $fmt = '%p\x1f%o\x1f%T\x1f%K\x1f%S\x1f%k%s%h\x1e';
	my @args = ('-C', '-b', $bootstrap, '-t', $topic, '-p', $partition, '-e', '-q',
		'-o', (defined $opts{offset} ? $opts{offset} : 'beginning'), '-f', $fmt);
	push @args, '-c', $opts{count} if defined $opts{count};
	my ($rc, $out, $err) = kcat_run(\@args);
	croak "kcat_consume from $topic [$partition] failed (exit $rc): $err" if $rc != 0;

	my @msgs;
	my $pos = 0;
	while ($pos < length $out)
	{
		my @f;
		for (1 .. 5)
		{
			my $e = index($out, "\x1f", $pos);
			croak "kcat_consume: cannot parse kcat output at byte $pos" if $e < 0;
			push @f, substr($out, $pos, $e - $pos);
			$pos = $e + 1;
		}
		my ($p, $o, $ts, $klen, $slen) = @f;
		my $key = $klen < 0 ? undef : substr($out, $pos, $klen);
		$pos += $klen if $klen > 0;
		my $value = $slen < 0 ? undef : substr($out, $pos, $slen);
		$pos += $slen if $slen > 0;
		my $e = index($out, "\x1e", $pos);
		croak "kcat_consume: cannot parse kcat output at byte $pos" if $e < 0;
		my $headers = substr($out, $pos, $e - $pos);
		$pos = $e + 1;
		push @msgs, {
			partition => $p, offset => $o, timestamp => $ts,
			key => $key, value => $value, headers => $headers,
		};
	}
	return @msgs;
}

sub kcat_produce_dealt
{
	my ($bootstrap, $topic, $partitions, $ids, $make) = @_;
	my %per;
	push @{ $per{ $_ % $partitions } }, $make->($_) for @$ids;
	kcat_produce($bootstrap, $topic, $per{$_}, partition => $_) for sort keys %per;
}

sub kcat_produce_ids
{
	my ($bootstrap, $topic, $from, $to, %opts) = @_;
	my $make = sub { qq({"id": $_[0]}) };
	return kcat_produce_dealt($bootstrap, $topic, $opts{partitions}, [ $from .. $to ], $make)
	  if defined $opts{partitions};
	return kcat_produce($bootstrap, $topic, [ map { $make->($_) } $from .. $to ]);
}

sub kcat_count
{
	my ($bootstrap, $topic, $partition) = @_;
	my ($rc, $out, $err) = kcat_run([ '-C', '-b', $bootstrap, '-t', $topic, '-p', $partition,
		'-o', 'beginning', '-e', '-q', '-f', '%o\n' ]);
	croak "kcat_count on $topic [$partition] failed (exit $rc): $err" if $rc != 0;
	return scalar(() = $out =~ /\n/g);
}

sub kcat_metadata
{
	my ($bootstrap, $topic) = @_;
	my @args = ('-L', '-J', '-b', $bootstrap);
	push @args, '-t', $topic if defined $topic;
	my ($rc, $out, $err) = kcat_run(\@args);
	croak "kcat -L failed (exit $rc): $err" if $rc != 0;
	return JSON::PP::decode_json($out);
}

1;
