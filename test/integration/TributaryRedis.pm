# test/integration/TributaryRedis.pm: a real redis-server and a Redis client for tributary's
# integration tests.
#
# The server is Debian's redis-server (the project did not write it), started on a free
# loopback port (and, when asked, a unix socket) with its own directory, no RDB snapshots and
# an append-only file fsynced on every write: stopped and started again on the same port and
# directory it comes back with every entry it acknowledged. The client is a small RESP
# connection written here (binary safe, pipelined, replies decoded into Perl data) and a
# wrapper around redis-cli for what a user would type. Nothing here needs a PostgreSQL node,
# so this module can be used with or without TributaryTest.
#
#   use TributaryRedis;
#
#   my $redis = redis_start(unix => 1);
#   my $url = $redis->url;                            # "redis://127.0.0.1:PORT"
#   my $id = $redis->xadd('orders', [ id => 1, name => 'x' ]);   # "1700000000000-0"
#   my @ids = $redis->xadd_bulk('orders', [ map { [ id => $_ ] } 1 .. 50000 ]);
#   is($redis->xlen('orders'), 50001, 'all in');
#   my $out = $redis->cli('XREADGROUP', 'GROUP', 'g', 'other', 'COUNT', 10, 'STREAMS', 'orders', '>');
#   $redis->stop;                                     # SIGTERM: AOF fsynced, exit 0
#   $redis->restart;                                  # same port, socket and dir: data kept
#   $redis->stop;                                     # also done by DESTROY and at END
#
# Exports:
#   redis_start(%opts)          start a redis-server, wait until it answers PING and return an
#                               object (below). Options:
#       port     => P           TCP port on 127.0.0.1 (default: a free one, from
#                               PostgreSQL::Test::Cluster::get_free_port)
#       unix     => 1           also listen on the unix socket DIR/redis.sock (mode 700)
#       password => 'pw'        requirepass (the "default" user's password); the client
#                               here AUTHs with it
#       args     => [ ... ]     more redis-server options, e.g. [ '--maxmemory', '10mb' ]
#       timeout  => seconds     for start, restart, stop and each reply (default 30)
#     The server runs in the foreground as a child of the test (--daemonize no), logging to
#     DIR/redis.log (see ->server_log); DIR is a fresh temp dir removed at exit. The binaries are
#     $ENV{TRIB_REDIS_SERVER} / $ENV{TRIB_REDIS_CLI} if set, else redis-server / redis-cli
#     from PATH.
#   Methods:
#     ->host, ->port, ->dir, ->socket_path (undef without unix), ->pid, ->password
#     ->url(%o)                 "redis://[user:password@]127.0.0.1:PORT[/db]" (o: user,
#                               password, db)
#     ->unix_url(%o)            "unix://[user:password@]DIR/redis.sock[?db=N]" (same o)
#     ->command(@args)          one command over the client connection; returns the reply
#                               (string, integer, undef for nil, array ref for arrays);
#                               dies with the server's error message on an error reply
#     ->try_command(@args)      the same, but an error reply is returned as a
#                               TributaryRedis::Error object (->message; stringifies to it)
#     ->pipeline(\@commands)    send many commands ([ @args ] each) in chunks of 1000 without
#                               waiting for each reply; the replies in order (errors as
#                               TributaryRedis::Error objects, not dying)
#     ->transaction(\@commands)  MULTI, the commands, EXEC in one pipeline: no other client's
#                               command runs between them; EXEC's replies (an array ref);
#                               dies when any command fails
#     ->xadd($key, \@fields, %o)          XADD $key ID f v ...; the id. o: id => (default '*')
#     ->xadd_bulk($key, \@entries, %o)    XADD of every entry (a [f, v, ...] array ref) in a
#                               pipeline; the ids XADD returned, in order; dies on any error.
#                               o: ids => [ ... ] explicit ids (default '*' for each)
#     ->pipe_load($key, \@entries)        the same entries written as RESP to `redis-cli --pipe`
#                               (what a user loading a stream in bulk does); the number of
#                               replies; dies on any error. The ids: ->xrange_ids.
#     ->xlen($key)
#     ->xrange($key, $start = '-', $end = '+')   [ id, { field => value } ] for each entry
#                               (fields of one entry are distinct in every test here)
#     ->xrange_ids($key)        every entry id of the key, in order (XRANGE in chunks)
#     ->xinfo_stream($key)      XINFO STREAM as a hash ref (first-entry/last-entry as array refs)
#     ->xinfo_groups($key)      XINFO GROUPS as a list of hash refs (name, consumers, pending,
#                               last-delivered-id, entries-read, lag); () when the key is missing
#     ->xinfo_consumers($key, $group)   list of hash refs (name, pending, idle, ...)
#     ->xpending($key, $group)  summary: { count, min, max, consumers => { name => count } }
#     ->xpending_entries($key, $group, %o)   every pending entry as { id, consumer, idle,
#                               deliveries }; o: consumer => name
#     ->cli(@args)              run redis-cli against this server with @args (password and
#                               socket handled); its stdout without the final newline. Dies
#                               when redis-cli exits non-zero. (redis-cli exits 0 on error
#                               replies: use ->command when the error matters.)
#     ->cli_run(\@args, $stdin) run redis-cli; (exit status, stdout, stderr)
#     ->stop                    SIGTERM and wait (SIGKILL after the timeout); true when it
#                               exited 0. Idempotent. Closes the client connection.
#     ->kill9                   SIGKILL and wait (a crash; with appendfsync always no
#                               acknowledged write is lost)
#     ->restart                 stop if running, then start again with the same port, socket,
#                               dir and options; waits until it answers PING (AOF loaded)
#     ->running, ->exit_status, ->server_log (what the server logged so far)
#   redis_wait($code, $timeout = 60, $interval = 0.1)
#       call $code until it returns true; its last value, or undef after the timeout. For
#       conditions on the Redis side (what wait_for is for PostgreSQL).

package TributaryRedis;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket ();
use IPC::Run ();
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use Scalar::Util qw(weaken refaddr);
use Time::HiRes ();

our @EXPORT = qw(redis_start redis_wait);

# Every server still running, weakly, so END can stop those a dying test left behind.
my %live;

sub _server_bin { return $ENV{TRIB_REDIS_SERVER} || 'redis-server'; }
sub _cli_bin { return $ENV{TRIB_REDIS_CLI} || 'redis-cli'; }

sub redis_start
{
	my (%opts) = @_;
	my $dir = File::Temp::tempdir('redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $self = bless {
		dir => $dir,
		host => '127.0.0.1',
		port => defined $opts{port} ? $opts{port} : PostgreSQL::Test::Cluster::get_free_port(),
		socket => $opts{unix} ? "$dir/redis.sock" : undef,
		password => $opts{password},
		args => $opts{args} || [],
		timeout => defined $opts{timeout} ? $opts{timeout} : 30,
		owner => $$,
		running => 0,
		rbuf => '',
	}, __PACKAGE__;
	$self->_spawn;
	return $self;
}

sub _server_cmd
{
	my ($self) = @_;
	my @cmd = (_server_bin(),
		'--port', $self->{port}, '--bind', $self->{host}, '--dir', $self->{dir},
		'--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
		'--daemonize', 'no', '--logfile', '', '--pidfile', "$self->{dir}/redis.pid");
	push @cmd, '--unixsocket', $self->{socket}, '--unixsocketperm', '700' if defined $self->{socket};
	push @cmd, '--requirepass', $self->{password} if defined $self->{password};
	push @cmd, @{ $self->{args} };
	return @cmd;
}

# Start the server in the foreground (stdout and stderr appended to DIR/redis.log) and wait
# until it answers PING.
sub _spawn
{
	my ($self) = @_;
	my @cmd = $self->_server_cmd;
	my $log = "$self->{dir}/redis.log";
	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# Nothing the test inherited beyond stdio (say, the fd of a `flock` around the test
		# run) may outlive the test in the server.
		POSIX::close($_) for 3 .. 1023;
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		exec(@cmd) or POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	$self->{running} = 1;
	delete $self->{exit_status};
	$live{ refaddr($self) } = $self;
	weaken($live{ refaddr($self) });

	my $deadline = Time::HiRes::time() + $self->{timeout};
	for (;;)
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			$self->{exit_status} = $?;
			$self->{running} = 0;
			delete $live{ refaddr($self) };
			croak "redis-server (@cmd) exited with status $? at start; its log:\n" . $self->server_log;
		}
		my $pong = eval { $self->try_command('PING') };
		$self->_disconnect unless defined $pong && !ref $pong && $pong eq 'PONG';
		return 1 if defined $pong && !ref $pong && $pong eq 'PONG';
		if (Time::HiRes::time() > $deadline)
		{
			my $why = defined $pong ? "$pong" : ($@ || 'no answer');
			$self->stop;
			croak "redis-server (@cmd) did not answer PING within $self->{timeout}s ($why); its log:\n"
			  . $self->server_log;
		}
		Time::HiRes::sleep(0.05);
	}
}

sub host { return $_[0]->{host}; }
sub port { return $_[0]->{port}; }
sub dir { return $_[0]->{dir}; }
sub socket_path { return $_[0]->{socket}; }
sub pid { return $_[0]->{pid}; }
sub password { return $_[0]->{password}; }
sub running { return $_[0]->{running}; }
sub exit_status { return $_[0]->{exit_status}; }

sub _userinfo
{
	my (%o) = @_;
	return '' unless defined $o{user} || defined $o{password};
	return (defined $o{user} ? $o{user} : '') . (defined $o{password} ? ":$o{password}" : '') . '@';
}

sub url
{
	my ($self, %o) = @_;
	return 'redis://' . _userinfo(%o) . "$self->{host}:$self->{port}" . (defined $o{db} ? "/$o{db}" : '');
}

sub unix_url
{
	my ($self, %o) = @_;
	croak 'this redis-server has no unix socket (redis_start(unix => 1))' unless defined $self->{socket};
	return 'unix://' . _userinfo(%o) . $self->{socket} . (defined $o{db} ? "?db=$o{db}" : '');
}

sub server_log
{
	my ($self) = @_;
	open(my $fh, '<', "$self->{dir}/redis.log") or return '';
	local $/;
	my $s = <$fh>;
	close $fh;
	return defined $s ? $s : '';
}

# ---------------------------------------------------------------------------------------
# Process control

# Wait for the server process to exit, up to $timeout seconds; true when it did.
sub _reap
{
	my ($self, $timeout) = @_;
	my $deadline = Time::HiRes::time() + $timeout;
	for (;;)
	{
		my $r = waitpid($self->{pid}, WNOHANG);
		if ($r == $self->{pid} || $r == -1)
		{
			$self->{exit_status} = $r == -1 ? -1 : $?;
			return 1;
		}
		return 0 if Time::HiRes::time() > $deadline;
		Time::HiRes::sleep(0.02);
	}
}

sub _halt
{
	my ($self, $signal) = @_;
	# Reaping sets $?; when called from END or DESTROY that would be the test's exit code.
	local ($?, $@);
	return $self->{stopped_ok} unless $self->{running};
	$self->_disconnect;
	kill $signal, $self->{pid};
	my $exited = $self->_reap($self->{timeout});
	unless ($exited)
	{
		kill 'KILL', $self->{pid};
		$self->_reap(10);
	}
	$self->{running} = 0;
	delete $live{ refaddr($self) };
	$self->{stopped_ok} = ($exited && $signal eq 'TERM' && $self->{exit_status} == 0) ? 1 : 0;
	return $self->{stopped_ok};
}

sub stop { return $_[0]->_halt('TERM'); }

sub kill9
{
	my ($self) = @_;
	$self->_halt('KILL');
	return 1;
}

sub restart
{
	my ($self) = @_;
	$self->stop if $self->{running};
	$self->_spawn;
	return 1;
}

sub DESTROY
{
	my ($self) = @_;
	# Not in a forked child (IPC::Run forks to run redis-cli): the server belongs to its parent.
	$self->stop if $self->{running} && $self->{owner} == $$;
}

END
{
	for my $r (values %live)
	{
		$r->stop if defined $r && $r->{running} && $r->{owner} == $$;
	}
}

sub redis_wait
{
	my ($code, $timeout, $interval) = @_;
	$timeout = 60 unless defined $timeout;
	$interval = 0.1 unless defined $interval;
	my $deadline = Time::HiRes::time() + $timeout;
	for (;;)
	{
		my $v = $code->();
		return $v if $v;
		return undef if Time::HiRes::time() > $deadline;
		Time::HiRes::sleep($interval);
	}
}

# ---------------------------------------------------------------------------------------
# The client connection: RESP2, binary safe.

sub _disconnect
{
	my ($self) = @_;
	close($self->{sock}) if $self->{sock};
	delete $self->{sock};
	$self->{rbuf} = '';
	return;
}

sub _connect
{
	my ($self) = @_;
	return $self->{sock} if $self->{sock};
	my $sock =
	  defined $self->{socket}
	  ? IO::Socket::UNIX->new(Type => Socket::SOCK_STREAM(), Peer => $self->{socket})
	  : IO::Socket::INET->new(PeerAddr => $self->{host}, PeerPort => $self->{port},
		Proto => 'tcp', Timeout => $self->{timeout});
	croak "cannot connect to redis-server at "
	  . (defined $self->{socket} ? $self->{socket} : "$self->{host}:$self->{port}") . ": $!"
	  unless $sock;
	binmode($sock);
	$self->{sock} = $sock;
	$self->{rbuf} = '';
	if (defined $self->{password})
	{
		my $r = $self->_roundtrip([ 'AUTH', $self->{password} ]);
		if (ref $r)
		{
			$self->_disconnect;
			croak "AUTH failed: $r";
		}
	}
	return $sock;
}

sub _encode
{
	my (@args) = @_;
	my $s = '*' . scalar(@args) . "\r\n";
	for my $a (@args)
	{
		croak 'undefined argument in a Redis command' unless defined $a;
		my $b = "$a";
		utf8::encode($b) if utf8::is_utf8($b);
		$s .= '$' . length($b) . "\r\n" . $b . "\r\n";
	}
	return $s;
}

sub _send
{
	my ($self, $data) = @_;
	my $sock = $self->{sock};
	my $off = 0;
	while ($off < length $data)
	{
		my $n = syswrite($sock, $data, length($data) - $off, $off);
		unless (defined $n)
		{
			next if $!{EINTR};
			my $err = $!;
			$self->_disconnect;
			croak "cannot write to redis-server: $err";
		}
		$off += $n;
	}
	return;
}

# More bytes into the read buffer, waiting up to the timeout.
sub _fill
{
	my ($self) = @_;
	my $sel = IO::Select->new($self->{sock});
	unless ($sel->can_read($self->{timeout}))
	{
		$self->_disconnect;
		croak "redis-server sent no reply within $self->{timeout}s";
	}
	my $n = sysread($self->{sock}, $self->{rbuf}, 65536, length $self->{rbuf});
	if (!$n)
	{
		my $err = defined $n ? 'connection closed' : "$!";
		$self->_disconnect;
		croak "cannot read from redis-server: $err";
	}
	return;
}

sub _line
{
	my ($self) = @_;
	my $i;
	$self->_fill while ($i = index($self->{rbuf}, "\r\n")) < 0;
	my $l = substr($self->{rbuf}, 0, $i);
	substr($self->{rbuf}, 0, $i + 2, '');
	return $l;
}

sub _bytes
{
	my ($self, $n) = @_;
	$self->_fill while length($self->{rbuf}) < $n + 2;
	my $b = substr($self->{rbuf}, 0, $n);
	substr($self->{rbuf}, 0, $n + 2, '');
	return $b;
}

sub _reply
{
	my ($self) = @_;
	my $l = $self->_line;
	my ($t, $v) = (substr($l, 0, 1), substr($l, 1));
	return $v if $t eq '+';
	return TributaryRedis::Error->new($v) if $t eq '-';
	return $v + 0 if $t eq ':';
	if ($t eq '$')
	{
		return undef if $v < 0;
		return $self->_bytes($v);
	}
	if ($t eq '*')
	{
		return undef if $v < 0;
		return [ map { $self->_reply } 1 .. $v ];
	}
	$self->_disconnect;
	croak "unexpected reply from redis-server: $l";
}

sub _roundtrip
{
	my ($self, $cmd) = @_;
	$self->_send(_encode(@$cmd));
	return $self->_reply;
}

sub try_command
{
	my ($self, @args) = @_;
	$self->_connect;
	return $self->_roundtrip(\@args);
}

sub command
{
	my ($self, @args) = @_;
	my $r = $self->try_command(@args);
	croak "redis $args[0]: $r" if ref $r eq 'TributaryRedis::Error';
	return $r;
}

sub pipeline
{
	my ($self, $cmds) = @_;
	$self->_connect;
	my @replies;
	for (my $i = 0; $i < @$cmds; $i += 1000)
	{
		my $end = $i + 999 < $#$cmds ? $i + 999 : $#$cmds;
		$self->_send(join('', map { _encode(@$_) } @$cmds[ $i .. $end ]));
		push @replies, $self->_reply for $i .. $end;
	}
	return @replies;
}

sub transaction
{
	my ($self, $cmds) = @_;
	my @replies = $self->pipeline([ ['MULTI'], @$cmds, ['EXEC'] ]);
	my $exec = pop @replies;
	for my $r (@replies, ref $exec eq 'ARRAY' ? @$exec : $exec)
	{
		croak "redis transaction failed: $r" if ref $r eq 'TributaryRedis::Error';
	}
	croak 'redis transaction was aborted' unless ref $exec eq 'ARRAY';
	return $exec;
}

# ---------------------------------------------------------------------------------------
# Streams

sub xadd
{
	my ($self, $key, $fields, %o) = @_;
	return $self->command('XADD', $key, defined $o{id} ? $o{id} : '*', @$fields);
}

sub xadd_bulk
{
	my ($self, $key, $entries, %o) = @_;
	my $ids = $o{ids};
	croak 'xadd_bulk: ids and entries differ in number' if $ids && @$ids != @$entries;
	my @cmds = map { [ 'XADD', $key, $ids ? $ids->[$_] : '*', @{ $entries->[$_] } ] } 0 .. $#$entries;
	my @replies = $self->pipeline(\@cmds);
	for my $i (0 .. $#replies)
	{
		croak "xadd_bulk: XADD $key (entry $i): $replies[$i]" if ref $replies[$i];
	}
	return @replies;
}

sub cli_run
{
	my ($self, $args, $stdin) = @_;
	my ($out, $err) = ('', '');
	$stdin = '' unless defined $stdin;
	my @conn = defined $self->{socket} ? ('-s', $self->{socket}) : ('-h', $self->{host}, '-p', $self->{port});
	# the password through the environment, so redis-cli does not warn about -a
	local $ENV{REDISCLI_AUTH} = $self->{password} if defined $self->{password};
	IPC::Run::run([ _cli_bin(), @conn, @$args ], '<', \$stdin, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub cli
{
	my ($self, @args) = @_;
	my ($rc, $out, $err) = $self->cli_run(\@args);
	croak "redis-cli @args failed (exit $rc): $err$out" if $rc != 0;
	$out =~ s/\n\z//;
	return $out;
}

sub pipe_load
{
	my ($self, $key, $entries) = @_;
	my $input = join('', map { _encode('XADD', $key, '*', @$_) } @$entries);
	my ($rc, $out, $err) = $self->cli_run([ '--pipe' ], $input);
	croak "redis-cli --pipe failed (exit $rc): $err$out" if $rc != 0;
	my ($errors, $replies) = $out =~ /errors: (\d+), replies: (\d+)/;
	croak "redis-cli --pipe: unexpected output: $out" unless defined $replies;
	croak "redis-cli --pipe: $errors errors: $out" if $errors;
	return $replies;
}

sub xlen
{
	my ($self, $key) = @_;
	return $self->command('XLEN', $key);
}

sub xrange
{
	my ($self, $key, $start, $end) = @_;
	my $r = $self->command('XRANGE', $key, defined $start ? $start : '-', defined $end ? $end : '+');
	return map { [ $_->[0], { @{ $_->[1] } } ] } @$r;
}

sub xrange_ids
{
	my ($self, $key) = @_;
	my @ids;
	my $from = '-';
	for (;;)
	{
		my $r = $self->command('XRANGE', $key, $from, '+', 'COUNT', 10000);
		last unless @$r;
		push @ids, map { $_->[0] } @$r;
		$from = '(' . $r->[-1][0];
	}
	return @ids;
}

# A flat [name, value, ...] reply as a hash ref.
sub _pairs
{
	my ($r) = @_;
	return { @$r };
}

sub xinfo_stream
{
	my ($self, $key) = @_;
	return _pairs($self->command('XINFO', 'STREAM', $key));
}

sub xinfo_groups
{
	my ($self, $key) = @_;
	my $r = $self->try_command('XINFO', 'GROUPS', $key);
	if (ref $r eq 'TributaryRedis::Error')
	{
		return () if $r->message =~ /no such key/i;
		croak "redis XINFO GROUPS $key: $r";
	}
	return map { _pairs($_) } @$r;
}

sub xinfo_consumers
{
	my ($self, $key, $group) = @_;
	return map { _pairs($_) } @{ $self->command('XINFO', 'CONSUMERS', $key, $group) };
}

sub xpending
{
	my ($self, $key, $group) = @_;
	my $r = $self->command('XPENDING', $key, $group);
	return {
		count => $r->[0],
		min => $r->[1],
		max => $r->[2],
		consumers => { map { ($_->[0], $_->[1] + 0) } @{ $r->[3] || [] } },
	};
}

sub xpending_entries
{
	my ($self, $key, $group, %o) = @_;
	my @all;
	my $from = '-';
	for (;;)
	{
		my @cmd = ('XPENDING', $key, $group, $from, '+', 10000);
		push @cmd, $o{consumer} if defined $o{consumer};
		my $r = $self->command(@cmd);
		last unless @$r;
		push @all, map { { id => $_->[0], consumer => $_->[1], idle => $_->[2], deliveries => $_->[3] } } @$r;
		$from = '(' . $r->[-1][0];
	}
	return @all;
}

# ---------------------------------------------------------------------------------------

package TributaryRedis::Error;

use overload '""' => sub { $_[0]->{message} }, fallback => 1;

sub new { my ($class, $m) = @_; return bless { message => $m }, $class; }
sub message { return $_[0]->{message}; }

1;
