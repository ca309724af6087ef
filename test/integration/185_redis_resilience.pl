# Redis Streams exactly once, entry by entry: the ids XADD returned are compared with the
# entry ids the table holds (every id once, none missing, none extra), and the group has
# nothing left pending, after
#
#  - kill -9 of the worker mid-stream (restart_after_crash = on);
#  - redis-server stopped mid-stream: the worker stays, the stream stays 'running' with the
#    outage in last_error; redis-server started again on the same port and directory (its
#    append-only file keeps every entry and the group): the count ends exact and last_error
#    clears;
#  - an immediate shutdown of PostgreSQL mid-stream;
#  - the group gone while the stream runs (the key deleted, the group destroyed, FLUSHALL)
#    and entries added at once: the group is created again, said in the log, and the new
#    entries are consumed;
#  - the key re-created with ids below the stored position, and a stored position ahead of
#    the key: a warning, and the entries are consumed, not skipped;
#  - parallelism 2 over 4 keys (each key read by one worker) with kill -9 of one worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryRedis;

my $redis = redis_start();
my $url = $redis->url;
my $port = $redis->port;

my $node = tributary_node('redis_res', conf => "restart_after_crash = on\nlog_min_messages = info");

# Every statement into a "slow" table sleeps 50 ms, so a batch of 200 entries takes at
# least that long: slow enough to interrupt the stream in its middle.
sql($node, q{
	CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$;
});

sub slow_table
{
	my ($name) = @_;
	sql($node, qq{
		CREATE TABLE $name (n bigint, k text, eid text, pad text);
		CREATE TRIGGER ${name}_slow AFTER INSERT ON $name FOR EACH STATEMENT EXECUTE FUNCTION slow();
	});
}

# XADD $count entries to $key on $r; their ids.
my $pad = 'p' x 100;
sub load
{
	my ($r, $key, $count) = @_;
	return $r->xadd_bulk($key, [ map { [ n => $_, pad => $pad ] } 1 .. $count ]);
}

# The only group of $key (the stream's default group).
sub group_of
{
	my ($r, $key) = @_;
	my @g = $r->xinfo_groups($key);
	return @g == 1 ? $g[0]{name} : undef;
}

# Nothing left pending in $key's groups (every stored entry acknowledged).
sub none_pending
{
	my ($r, $key, $what) = @_;
	ok(redis_wait(sub { my @g = $r->xinfo_groups($key); @g && !grep { $_->{pending} } @g }, 30),
		"$what: nothing left pending in the group of $key")
	  or diag(explain([ $r->xinfo_groups($key) ]));
}

# ---------------------------------------------------------------------------------------
# kill -9 of the worker mid-stream.

slow_table('res');
my @ids = load($redis, 'res', 20000);
sql($node, qq{SELECT tributary.create_stream('res', 'res', 'redis',
	'{"url": "$url", "stream": "res", "batch_size": 200, "batch_ms": 20, "metadata": {"id": "eid"}}')});
ok(wait_for($node, 'SELECT count(*) BETWEEN 1000 AND 15000 FROM res', 't', 60), 'kill -9: mid-stream');
my $pid = worker_pid($node, 'res');
ok(kill('KILL', $pid), 'kill -9 of the worker');
check_entry_ids($node, 'res', 'eid', 'res', \@ids, 'after kill -9 of the worker');
is(sql($node, q{SELECT source_partition || '|' || position FROM tributary.offsets WHERE stream = 'res'}),
	"|$ids[-1]", 'after kill -9: the stored position is the last entry id');
none_pending($redis, 'res', 'after kill -9');

# ---------------------------------------------------------------------------------------
# redis-server stopped mid-stream, then started again on the same port and directory.

push @ids, load($redis, 'res', 20000);
ok(wait_for($node, 'SELECT count(*) BETWEEN 21000 AND 35000 FROM res', 't', 60), 'redis down: mid-stream');
$pid = worker_pid($node, 'res');
ok($redis->stop, 'redis-server stops');
ok( wait_for(
		$node, qq{SELECT last_error LIKE 'could not reach Redis at 127.0.0.1:$port%' FROM tributary.streams
		          WHERE name = 'res'}, 't', 60),
	'redis down: last_error says Redis cannot be reached')
  or diag(sql($node, q{SELECT last_error FROM tributary.streams WHERE name = 'res'}));
is( sql($node, q{SELECT s.state || '/' || (st.last_error = s.last_error) FROM tributary.streams s
                 JOIN tributary.stream_stats st ON st.stream = s.name AND st.topic IS NULL WHERE s.name = 'res'}),
	'running/true', 'redis down: the stream is running, stream_stats shows the same error');
my $while_down = sql($node, 'SELECT count(*) FROM res');
ok($redis->restart, 'redis-server starts again on the same port and directory');
is($redis->xlen('res'), 40000, 'redis back: every entry is still there (append-only file)');
check_entry_ids($node, 'res', 'eid', 'res', \@ids, 'after redis-server stopped and started');
is(worker_pid($node, 'res'), $pid, 'redis down: the same worker ran throughout');
ok(wait_for($node, q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'res'}, 't', 60),
	'redis back: last_error is cleared');
none_pending($redis, 'res', 'after the outage');
note("redis down: $while_down rows were in when it went down");
# (the reason is hiredis's, whatever it says; it must be there)
my $res_log = slurp_file($node->logfile);
like($res_log, qr/tributary stream "res": lost the connection to Redis at 127\.0\.0\.1:$port: /,
	'redis down: the log says the connection was lost');
unlike($res_log, qr/lost the connection to Redis at [^\n]*: $/m, 'redis down: ... and why');

# ---------------------------------------------------------------------------------------
# An immediate shutdown of PostgreSQL mid-stream.

push @ids, load($redis, 'res', 20000);
ok(wait_for($node, 'SELECT count(*) BETWEEN 41000 AND 55000 FROM res', 't', 60), 'immediate shutdown: mid-stream');
$node->stop('immediate');
$node->start;
check_entry_ids($node, 'res', 'eid', 'res', \@ids, 'after an immediate shutdown');
none_pending($redis, 'res', 'after an immediate shutdown');

# ---------------------------------------------------------------------------------------
# The group gone while the stream runs (a second redis-server, since FLUSHALL empties all),
# and new entries added in the same transaction: the group is created again, and the new
# entries (ids above the stored position) are all consumed.

my $r2 = redis_start();
my $url2 = $r2->url;
sql($node, qq{
	CREATE TABLE nog (n bigint, k text, eid text, pad text);
	SELECT tributary.create_stream('nog', 'nog', 'redis',
		'{"url": "$url2", "stream": "nogk", "metadata": {"id": "eid"}}');
});
my @nog = load($r2, 'nogk', 100);
check_entry_ids($node, 'nog', 'eid', 'nog', \@nog, 'before the group goes');
my $group = group_of($r2, 'nogk');
ok(defined $group, 'the stream made one group on its key');

# XADDs after $how in one transaction; the new ids.
sub gone_then_add
{
	my ($how, $count) = @_;
	my $exec = $r2->transaction([ @$how, map { [ 'XADD', 'nogk', '*', n => $_, pad => $pad ] } 1 .. $count ]);
	return @$exec[ scalar(@$how) .. $#$exec ];
}

for my $case ([ 'the key deleted', [ [ 'DEL', 'nogk' ] ] ],
	[ 'the group destroyed', [ [ 'XGROUP', 'DESTROY', 'nogk', $group ] ] ],
	[ 'FLUSHALL', [ ['FLUSHALL'] ] ])
{
	my ($what, $how) = @$case;
	my $log_offset = -s $node->logfile;
	push @nog, gone_then_add($how, 100);
	check_entry_ids($node, 'nog', 'eid', 'nog', \@nog, "NOGROUP ($what)");
	ok( $node->wait_for_log(qr/LOG:  tributary stream "nog": consumer group "\Q$group\E" of key "nogk" (?:is|was) gone/,
			$log_offset),
		"NOGROUP ($what): the log says the group is gone");
	is(group_of($r2, 'nogk'), $group, "NOGROUP ($what): the group is there again");
	none_pending($r2, 'nogk', "NOGROUP ($what)");
}

# ---------------------------------------------------------------------------------------
# The key re-created with explicit ids below the stored position: a warning, and the new
# entries are consumed from the key's start.

sql($node, qq{
	CREATE TABLE low (n bigint, k text, eid text, pad text);
	SELECT tributary.create_stream('low', 'low', 'redis',
		'{"url": "$url2", "stream": "lowk", "metadata": {"id": "eid"}}');
});
my @low = load($r2, 'lowk', 50);
check_entry_ids($node, 'low', 'eid', 'low', \@low, 'before the key is re-created');
my $log_offset = -s $node->logfile;
$r2->transaction([ [ 'DEL', 'lowk' ], map { [ 'XADD', 'lowk', "1-$_", n => $_ ] } 1 .. 5 ]);
push @low, map { "1-$_" } 1 .. 5;
check_entry_ids($node, 'low', 'eid', 'low', \@low, 're-created with lower ids');
ok($node->wait_for_log(qr/WARNING:  tributary stream "low": .*lowk/, $log_offset),
	're-created with lower ids: a warning');
$r2->xadd('lowk', [ n => 6 ], id => '1-6');
push @low, '1-6';
check_entry_ids($node, 'low', 'eid', 'low', \@low, 're-created with lower ids, one more after');
is(sql($node, q{SELECT position FROM tributary.offsets WHERE stream = 'low'}), '1-6',
	're-created with lower ids: the stored position follows the new key');

# A stored position ahead of the key, as left by a key deleted while the stream was stopped.
my @ahead = $r2->xadd_bulk('aheadk', [ map { [ n => $_ ] } 1 .. 10 ], ids => [ map { "5-$_" } 1 .. 10 ]);
$log_offset = -s $node->logfile;
sql($node, qq{
	CREATE TABLE ahead (n bigint, eid text);
	SELECT tributary.create_stream('ahead', 'ahead', 'redis',
		'{"url": "$url2", "stream": "aheadk", "metadata": {"id": "eid"}}', enabled => false);
	INSERT INTO tributary.offsets (stream, source_stream, source_partition, position)
		VALUES ('ahead', 'aheadk', '', '999999-0');
	SELECT tributary.start('ahead');
});
check_entry_ids($node, 'ahead', 'eid', 'ahead', \@ahead, 'stored position ahead of the key');
ok($node->wait_for_log(qr/WARNING:  tributary stream "ahead": .*999999-0/, $log_offset),
	'stored position ahead of the key: a warning names it');
is(sql($node, q{SELECT position FROM tributary.offsets WHERE stream = 'ahead'}), '5-10',
	'stored position ahead of the key: stored anew');

# ---------------------------------------------------------------------------------------
# Entries delivered again that are stored already (as after a crash between the commit and
# XACK, or a group moved back with XGROUP SETID): acknowledged, never stored twice. While
# the stream is stopped, its group is set back to the key's start and 30 entries are
# delivered to the stream's own consumer and left pending; 20 new entries follow.

sql($node, qq{
	CREATE TABLE redo (n bigint, eid text);
	SELECT tributary.create_stream('redo', 'redo', 'redis', '{"url": "$url2", "stream": "redok", "metadata": {"id": "eid"}}');
});
my @redo = $r2->xadd_bulk('redok', [ map { [ n => $_ ] } 1 .. 100 ]);
check_entry_ids($node, 'redo', 'eid', 'redo', \@redo, 'before the group is set back');
sql($node, q{SELECT tributary.stop('redo')});
ok(wait_for($node, workers_sql('redo'), '', 60), 'set back: the worker stopped');
my $rgroup = group_of($r2, 'redok');
$r2->command('XGROUP', 'SETID', 'redok', $rgroup, '0');
$r2->cli('XREADGROUP', 'GROUP', $rgroup, 'tributary-redo-1', 'COUNT', '30', 'STREAMS', 'redok', '>');
is($r2->xpending('redok', $rgroup)->{count}, 30, 'set back: 30 stored entries pending again');
push @redo, $r2->xadd_bulk('redok', [ map { [ n => $_ ] } 101 .. 120 ]);
sql($node, q{SELECT tributary.start('redo')});
check_entry_ids($node, 'redo', 'eid', 'redo', \@redo, 'group set back, entries delivered again');
none_pending($r2, 'redok', 'group set back');
is(sql($node, q{SELECT position FROM tributary.offsets WHERE stream = 'redo'}), $redo[-1],
	'group set back: the stored position is the last entry id');

# ---------------------------------------------------------------------------------------
# parallelism 2 over 4 keys, kill -9 of one worker mid-stream.

slow_table('par');
my @par;
push @par, load($redis, "par$_", 5000) for 0 .. 3;
sql($node, qq{SELECT tributary.create_stream('par', 'par', 'redis',
	'{"url": "$url", "stream": ["par0", "par1", "par2", "par3"], "parallelism": 2, "batch_size": 200,
	  "batch_ms": 20, "metadata": {"id": "eid", "stream": "k"}}')});
ok(wait_for($node, workers_sql('par'), 'tributary: par #1,tributary: par #2', 60), 'parallelism 2: two workers');
ok(wait_for($node, 'SELECT count(*) BETWEEN 2000 AND 15000 FROM par', 't', 60), 'parallelism 2: mid-stream');
ok(kill('KILL', worker_pid($node, 'par #1')), 'parallelism 2: kill -9 of worker #1');
# (entry ids of different keys may be equal: compare key and id)
my $npar = scalar @par;
ok(wait_for($node, 'SELECT count(*) FROM par', $npar, 120), "parallelism 2: $npar rows arrived");
my @want;
for my $i (0 .. 3)
{
	push @want, map { "par$i/$_" } @par[ $i * 5000 .. $i * 5000 + 4999 ];
}
is( sql($node, q{WITH want AS (SELECT unnest(string_to_array(} . sql_literal(join(',', @want)) . q{, ',')) AS id),
	                  got AS (SELECT k || '/' || eid AS id FROM par)
	             SELECT (SELECT count(*) - count(DISTINCT id) FROM got) || '/' ||
	                    (SELECT count(*) FROM want w WHERE NOT EXISTS (SELECT FROM got g WHERE g.id = w.id)) || '/' ||
	                    (SELECT count(*) FROM got g WHERE g.id IS NULL
	                                                   OR NOT EXISTS (SELECT FROM want w WHERE w.id = g.id)) || '/' ||
	                    (SELECT count(*) FROM tributary.dead_letters WHERE stream = 'par')}),
	'0/0/0/0', 'parallelism 2 after kill -9: none twice, none missing, none extra, no dead letter');
my $pgroup = group_of($redis, 'par0');
my %by_key = map {
	my $k = "par$_";
	($k => join(',', sort map { $_->{name} } $redis->xinfo_consumers($k, $pgroup)))
} 0 .. 3;
is( join(' ', map { "$_=$by_key{$_}" } sort keys %by_key),
	join(' ', map { "par$_=" . ($by_key{par0} eq 'tributary-par-1' ? ($_ % 2 ? 'tributary-par-2' : 'tributary-par-1')
	                                                                 : ($_ % 2 ? 'tributary-par-1' : 'tributary-par-2')) } 0 .. 3),
	'parallelism 2: keys 0 and 2 are read by one consumer, keys 1 and 3 by the other');
is( sql($node, q{SELECT string_agg(source_stream || '|' || position, ',' ORDER BY source_stream) FROM tributary.offsets WHERE stream = 'par'}),
	join(',', map { "par$_|$par[$_ * 5000 + 4999]" } 0 .. 3), 'parallelism 2: each key stored its last entry id');
none_pending($redis, "par$_", 'parallelism 2') for 0 .. 3;

unlike(slurp_file($node->logfile), qr/worker #\d+ of stream "(nog|low|ahead)" exited/,
	'no worker of the NOGROUP and position streams exited');

$node->stop;
ok($redis->stop, 'redis-server stops cleanly');
ok($r2->stop, 'the second redis-server stops cleanly');
done_testing();
