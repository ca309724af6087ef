# Redis Streams into tables, against a real redis-server (TributaryRedis.pm):
#
#  - how an entry's field-value pairs become a row: all fields as strings into typed columns
#    (format json, no "fields"); a "fields" object parsing named fields as JSON, "*" for the
#    rest; a "fields" string naming the one field that is the payload, for json, csv, text
#    and bytes; metadata columns for the key, the entry id and the id's time;
#  - malformed entries (invalid JSON in a field parsed as JSON, no payload field, a value a
#    column refuses, a NUL byte) become dead letters with the key and the entry id, the
#    stream goes on, and tributary.replay_dead_letters stores them once the table is fixed;
#  - "start" "0", "$" and an entry id; a key that does not exist yet (created with the group);
#    two keys into one table (positions and statistics per key); a unix socket url with a
#    database number; entries another consumer of the group left pending are claimed and
#    stored exactly once;
#  - a url with user and password: the stream authenticates, a non-admin owner sees the
#    password masked, and a wrong password is reported without being logged;
#  - options refused with clear errors: rediss:// (0A000), missing url or stream, a "fields"
#    object with a non-json format, Kafka's metadata names on a redis stream and Redis's on a
#    kafka stream, a bad "start".
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;
use TributaryRedis;

my $redis = redis_start(unix => 1);
my $url = $redis->url;
my $port = $redis->port;

my $node = tributary_node('redis', conf => "log_min_messages = info\ntributary.max_workers = 16");

# $stream's dead letters as "source_stream|source_partition|source_position|sqlstate", one
# line each, in the order of their entry ids.
sub dead_letters
{
	my ($stream) = @_;
	return sql($node, qq{
		SELECT string_agg(concat_ws('|', source_stream, source_partition, source_position, sqlstate),
		                  E'\\n' ORDER BY string_to_array(source_position, '-')::numeric[])
		FROM tributary.dead_letters WHERE stream = '$stream'});
}

# Stop streams whose part of the test is over, so the workers of the next parts start at
# once (tributary.max_workers and tributary.max_workers_per_role bound the running ones).
sub done_with
{
	sql($node, join('', map { "SELECT tributary.stop('$_');\n" } @_));
}

# The error of a statement, with its SQLSTATE (psql's verbose errors: "ERROR:  22023: ...").
sub fails_with
{
	my ($sql) = @_;
	return sql_fails($node, "\\set VERBOSITY verbose\n$sql") || '(no error)';
}

# ---------------------------------------------------------------------------------------
# No "fields", format json: every field becomes a JSON string, and each column's input
# function reads it.

sql($node, qq{
	CREATE TABLE typed (id bigint, name text, price numeric(8,2), ok boolean, at timestamptz,
		doc jsonb, tags text[], eid text);
	SELECT tributary.create_stream('typed', 'typed', 'redis',
		'{"url": "$url", "stream": "typed", "metadata": {"id": "eid"}}');
});
my $odd = qq(He said "hi"\tthen\\left\nand ünïcode ✓);
my @typed = $redis->xadd_bulk('typed', [
	[ id => 1, name => $odd, price => '9.5', ok => 'true', at => '2026-03-01T10:00:00Z',
	  doc => '{"a": 1}', tags => '{x,y}', extra => 'ignored' ],
	[ id => 2, name => 'second', price => '0.125', ok => 'f', at => '2026-03-01 11:00:00+01', name => 'last wins' ],
	[ id => 3 ],
	[ id => 'abc', name => 'not a number' ],
	[ id => 5, name => "nul \0 byte" ],
	[ id => 6, name => 'after the bad ones' ],
]);
ok(wait_for($node, 'SELECT count(*) FROM typed', '4', 60), 'all strings: four rows land');
is( sql($node, q{SELECT string_agg(concat_ws('|', id, name, price, ok, at AT TIME ZONE 'UTC',
                                             doc::text, tags::text, coalesce(doc #>> '{}', 'NULL')), E'\n' ORDER BY id)
                 FROM typed}),
	"1|$odd|9.50|t|2026-03-01 10:00:00|\"{\\\"a\\\": 1}\"|{x,y}|{\"a\": 1}\n"
	  . "2|last wins|0.13|f|2026-03-01 10:00:00|NULL\n"
	  . "3|NULL\n"
	  . "6|after the bad ones|NULL",
	'all strings: numbers, booleans, times and arrays through their input functions; a jsonb '
	  . 'column gets a JSON string; quotes, tabs, backslashes, newlines and UTF-8 unchanged; a '
	  . 'repeated field: the last wins; absent fields are NULL');
is(sql($node, q{SELECT string_agg(eid, ',' ORDER BY id) FROM typed}),
	join(',', @typed[ 0, 1, 2, 5 ]), 'all strings: the id metadata column holds each entry id');
ok(wait_for($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'typed'}, '2', 60),
	'all strings: a value bigint refuses and a NUL byte are dead letters');
like(dead_letters('typed'), qr/^typed\|\|\Q$typed[3]\E\|22P02\ntyped\|\|\Q$typed[4]\E\|\w{5}$/,
	'all strings: dead letters carry the key, no partition, the entry id and the SQLSTATE');
done_with('typed');

# ---------------------------------------------------------------------------------------
# A "fields" object: named fields parsed as JSON ("json") or kept as strings ("text"); "*"
# for the others (default "text").

sql($node, qq{
	CREATE TABLE parsed (id text, attrs jsonb, n int, flag boolean, quoted text, v int CHECK (v > 0), eid text);
	SELECT tributary.create_stream('parsed', 'parsed', 'redis',
		'{"url": "$url", "stream": "parsed", "fields": {"attrs": "json", "id": "text", "*": "json"},
		  "metadata": {"id": "eid"}}');
	CREATE TABLE stringy (LIKE parsed);
	SELECT tributary.create_stream('stringy', 'stringy', 'redis',
		'{"url": "$url", "stream": "parsed", "fields": {"attrs": "json"}}');
});
my @parsed = $redis->xadd_bulk('parsed', [
	[ id => '007', attrs => '{"a": [1, 2], "b": null}', n => '5', flag => 'true', quoted => '"q"', v => '1' ],
	[ id => '8', attrs => '{broken', v => '2' ],
	[ id => '9', attrs => '[]', v => '-3' ],
	[ id => '10', attrs => 'null', n => '10', v => '4' ],
]);
ok(wait_for($node, 'SELECT count(*) FROM parsed', '2', 60), 'fields object: two rows land');
is( sql($node, q{SELECT string_agg(concat_ws('|', id, coalesce(attrs::text, 'NULL'), n, flag, quoted, v, eid),
                                   E'\n' ORDER BY n) FROM parsed}),
	qq(007|{"a": [1, 2], "b": null}|5|t|q|1|$parsed[0]\n10|NULL|10|4|$parsed[3]),
	'fields object: "json" fields parsed (a JSON null is NULL), "text" kept ("007"), "*" parses the rest ("\"q\"" is q)');
ok(wait_for($node, 'SELECT count(*) FROM stringy', '3', 60),
	'fields object without "*": three rows land (nothing parsed but attrs)');
is( sql($node, q{SELECT string_agg(concat_ws('|', id, n, quoted), E'\n' ORDER BY id) FROM stringy WHERE quoted IS NOT NULL}),
	'007|5|"q"', 'fields object without "*": the other fields stay strings ("\"q\"" keeps its quotes)');
ok(wait_for($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'parsed'}, '2', 60),
	'fields object: invalid JSON and a refused value are dead letters');
is( dead_letters('parsed'), "parsed||$parsed[1]|22P02\nparsed||$parsed[2]|23514",
	'fields object: dead letters with the key, the entry id and the SQLSTATE');
like(sql($node, qq{SELECT error FROM tributary.dead_letters WHERE stream = 'parsed' AND source_position = '$parsed[1]'}),
	qr/attrs/, 'fields object: the error of the invalid JSON names the field');

# Fix the table, replay: the refused entry lands with its entry id; the invalid JSON stays.
sql($node, 'ALTER TABLE parsed DROP CONSTRAINT parsed_v_check');
is(sql($node, q{SELECT accepted || '/' || dead_lettered FROM tributary.replay_dead_letters('parsed')}),
	'1/1', 'replay: the refused entry is stored, the invalid JSON is still dead')
  or diag('rows of entry 8 after the replay: ' . sql($node, q{SELECT id || ' ' || attrs::text FROM parsed WHERE id = '8'}));
is(sql($node, q{SELECT count(*) FROM parsed WHERE id = '8'}), '0', 'replay: the entry with invalid JSON in "attrs" is not stored');
is(sql($node, q{SELECT concat_ws('|', id, attrs::text, v, eid) FROM parsed WHERE id = '9'}),
	"9|[]|-3|$parsed[2]", 'replay: the row has its values and its entry id');
is( sql($node, q{SELECT source_position || '|' || attempts FROM tributary.dead_letters WHERE stream = 'parsed'}),
	"$parsed[1]|2", 'replay: the one left keeps its entry id, attempted twice');
done_with('parsed', 'stringy');

# ---------------------------------------------------------------------------------------
# A "fields" string: that one field's value is the whole payload, in any format.

sql($node, qq{
	CREATE TABLE fj (id int, name text);
	CREATE TABLE fc (id int, name text, score float8);
	CREATE TABLE ft (line text);
	CREATE TABLE fb (b bytea);
	SELECT tributary.create_stream('fj', 'fj', 'redis',
		'{"url": "$url", "stream": "fj", "fields": "payload", "format": "json"}');
	SELECT tributary.create_stream('fc', 'fc', 'redis',
		'{"url": "$url", "stream": "fc", "fields": "line", "format": "csv", "columns": ["id", "name", "score"]}');
	SELECT tributary.create_stream('ft', 'ft', 'redis',
		'{"url": "$url", "stream": "ft", "fields": "msg", "format": "text"}');
	SELECT tributary.create_stream('fb', 'fb', 'redis',
		'{"url": "$url", "stream": "fb", "fields": "blob", "format": "bytes"}');
});
my @fj = $redis->xadd_bulk('fj', [
	[ payload => '{"id": 1, "name": "one"}', id => 99, name => 'not the payload' ],
	[ other => '{"id": 2}' ],
	[ payload => '{"id": 3, "name": broken}' ],
	[ payload => '{"id": 4, "name": "four"}' ],
]);
$redis->xadd_bulk('fc', [ map { [ line => qq($_,"name, $_",$_.5) ] } 1 .. 50 ]);
my @fc_bad = $redis->xadd_bulk('fc', [ [ line => qq(999,"unterminated) ], [ line => '5,five,5.5,extra' ] ]);
$redis->xadd_bulk('ft', [ map { [ msg => "line $_ with\ttab and \\ backslash" ] } 1 .. 50 ]);
$redis->xadd_bulk('fb', [ map { [ blob => pack('C*', $_, 0, 255, 13, 10) ] } 1 .. 50 ]);
ok(wait_for($node, 'SELECT count(*) FROM fj', '2', 60), 'fields string, json: two rows land');
is(sql($node, q{SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM fj}), '1:one,4:four',
	'fields string, json: only the payload field is read');
ok(wait_for($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'fj'}, '2', 60),
	'fields string, json: an entry without the field and invalid JSON are dead letters');
like(dead_letters('fj'), qr/^fj\|\|\Q$fj[1]\E\|\w{5}\nfj\|\|\Q$fj[2]\E\|22P02$/,
	'fields string, json: the dead letters carry their entry ids');
ok(wait_for($node, 'SELECT count(*) FROM fc', '50', 60), 'fields string, csv: 50 rows');
is(sql($node, q{SELECT name || '|' || score FROM fc WHERE id = 7}), 'name, 7|7.5', 'fields string, csv: quoted fields and numbers');
ok(wait_for($node, q{SELECT count(*) FROM tributary.dead_letters WHERE stream = 'fc'}, '2', 60),
	'fields string, csv: bad records are dead letters');
is(dead_letters('fc'), "fc||$fc_bad[0]|22P04\nfc||$fc_bad[1]|22P04", 'fields string, csv: with their entry ids');
ok(wait_for($node, 'SELECT count(*) FROM ft', '50', 60), 'fields string, text: 50 lines');
is(sql($node, q{SELECT count(*) FROM ft WHERE line = E'line 7 with\ttab and \\\\ backslash'}), '1',
	'fields string, text: tabs and backslashes unchanged');
ok(wait_for($node, 'SELECT count(*) FROM fb', '50', 60), 'fields string, bytes: 50 payloads');
is(sql($node, q{SELECT count(*) FROM fb WHERE b = '\x0700ff0d0a'::bytea}), '1',
	'fields string, bytes: NUL, 0xff, CR and LF bytes unchanged');
done_with('fj', 'fc', 'ft', 'fb');

# ---------------------------------------------------------------------------------------
# Replies read whole and walked in place (redis_resp.c): values far larger than the first
# read's buffer (it grows over several socket reads), empty names and values, values that
# look like the protocol itself, and a batch of many entries in one reply.

sql($node, qq{
	CREATE TABLE big (n int, v text, w text);
	SELECT tributary.create_stream('big', 'big', 'redis', '{"url": "$url", "stream": "big"}');
});
my $resp_like = "\r\n*2\r\n\$3\r\nfoo\r\n-ERR no\r\n:1\r\n";
$redis->xadd_bulk('big', [
	[ n => 1, v => ('x' x 700000) . 'end', w => 'after the big one' ],
	[ n => 2, v => '', '' => 'an empty name', w => '' ],
	[ n => 3, v => $resp_like, w => ('y' x 65536) ],
	map { [ n => $_, v => "v$_" ] } 4 .. 3000,
]);
ok(wait_for($node, 'SELECT count(*) FROM big', '3000', 60), 'large replies: 3000 rows land');
is( sql($node, q{SELECT string_agg(concat_ws('|', n, length(v), right(v, 3), length(w), left(w, 5)), E'\n' ORDER BY n)
                 FROM big WHERE n <= 3}),
	"1|700003|end|17|after\n2|0||0|\n3|" . length($resp_like) . "|1\r\n|65536|yyyyy",
	'large replies: a 700 kB value, empty values and a value in the protocol\'s own form arrive unchanged');
is(sql($node, q{SELECT count(*) FROM big WHERE n > 3 AND v = 'v' || n AND w IS NULL}), '2997',
	'large replies: every small entry after them arrives whole');
is(sql($node, qq{SELECT v = E'\\r\\n*2\\r\\n\$3\\r\\nfoo\\r\\n-ERR no\\r\\n:1\\r\\n' FROM big WHERE n = 3}), 't',
	'large replies: the protocol-like value is byte for byte the one added');
done_with('big');

# ---------------------------------------------------------------------------------------
# Metadata: the key, the entry id, the id's milliseconds as a time. The entry's own fields
# never write them.

sql($node, qq{
	CREATE TABLE meta (n int, k text, eid text, ts timestamptz);
	SELECT tributary.create_stream('meta', 'meta', 'redis',
		'{"url": "$url", "stream": "meta", "metadata": {"stream": "k", "id": "eid", "timestamp": "ts"}}');
});
$redis->xadd_bulk('meta', [ [ n => 1, k => 'from the entry', eid => 'x', ts => '2000-01-01' ], [ n => 2 ] ],
	ids => [ '1700000000123-5', '1700000000124' ]);
ok(wait_for($node, 'SELECT count(*) FROM meta', '2', 60), 'metadata: two rows land');
is( sql($node, q{SELECT string_agg(concat_ws('|', n, k, eid, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')),
                                   E'\n' ORDER BY n) FROM meta}),
	"1|meta|1700000000123-5|2023-11-14 22:13:20.123\n2|meta|1700000000124-0|2023-11-14 22:13:20.124",
	'metadata: the key, the full entry id and its milliseconds as timestamptz; entry fields do not override them');
done_with('meta');

# ---------------------------------------------------------------------------------------
# "start": "0" (default: everything the key holds), "$" (only what comes after the group is
# created), an entry id (what comes after it). Three streams on one key: three groups.

my @old = $redis->xadd_bulk('starts', [ map { [ n => $_ ] } 1 .. 5 ], ids => [ map { "$_-1" } 1 .. 5 ]);
sql($node, qq{
	CREATE TABLE st_zero (n int);
	CREATE TABLE st_end (n int);
	CREATE TABLE st_id (n int);
	SELECT tributary.create_stream('st_zero', 'st_zero', 'redis', '{"url": "$url", "stream": "starts"}');
	SELECT tributary.create_stream('st_end', 'st_end', 'redis', '{"url": "$url", "stream": "starts", "start": "\$"}');
	SELECT tributary.create_stream('st_id', 'st_id', 'redis', '{"url": "$url", "stream": "starts", "start": "3-1"}');
});
my $sysid = sql($node, 'SELECT system_identifier FROM pg_control_system()');
ok( redis_wait(sub { grep { $_->{name} eq "tributary-$sysid-postgres-st_end" } $redis->xinfo_groups('starts') }, 60),
	'start "$": the worker creates its group, named tributary-<system id>-<database>-<stream>');
$redis->xadd_bulk('starts', [ map { [ n => $_ ] } 6 .. 8 ]);
ok(wait_for($node, 'SELECT count(*) FROM st_zero', '8', 60), 'start "0": all 8 entries');
ok(wait_for($node, 'SELECT count(*) FROM st_id', '5', 60), 'start "3-1": the 5 entries after 3-1');
ok(wait_for($node, 'SELECT count(*) FROM st_end', '3', 60), 'start "$": the 3 entries added after the group');
is( sql($node, q{SELECT (SELECT string_agg(n::text, ',' ORDER BY n) FROM st_zero) || ' ' ||
                        (SELECT string_agg(n::text, ',' ORDER BY n) FROM st_id) || ' ' ||
                        (SELECT string_agg(n::text, ',' ORDER BY n) FROM st_end)}),
	'1,2,3,4,5,6,7,8 4,5,6,7,8 6,7,8', 'start: each stream read exactly its entries');
is( join(',', sort map { $_->{name} } $redis->xinfo_groups('starts')),
	join(',', map { "tributary-$sysid-postgres-$_" } qw(st_end st_id st_zero)),
	'three streams on one key: three groups')
  or diag(explain([ $redis->xinfo_groups('starts') ]));
is( join(',', sort map { $_->{name} } $redis->xinfo_consumers('starts', "tributary-$sysid-postgres-st_zero")),
	'tributary-st_zero-1', 'the default consumer is tributary-<stream>-1');
done_with('st_zero', 'st_end', 'st_id');

# ---------------------------------------------------------------------------------------
# A key that does not exist yet: created with the group (MKSTREAM), consumed once it fills.

sql($node, qq{
	CREATE TABLE later (n int);
	SELECT tributary.create_stream('later', 'later', 'redis', '{"url": "$url", "stream": "later_key"}');
});
ok(redis_wait(sub { $redis->command('TYPE', 'later_key') eq 'stream' && $redis->xinfo_groups('later_key') == 1 }, 60),
	'missing key: created empty with its group');
is($redis->xlen('later_key'), 0, 'missing key: the key is empty');
$redis->xadd_bulk('later_key', [ map { [ n => $_ ] } 1 .. 20 ]);
ok(wait_for($node, 'SELECT count(*) || \'/\' || sum(n) FROM later', '20/210', 60), 'missing key: its entries arrive');
is(sql($node, q{SELECT last_error IS NULL FROM tributary.streams WHERE name = 'later'}), 't', 'missing key: no error');
done_with('later');

# ---------------------------------------------------------------------------------------
# Two keys into one table: positions and statistics per key.

sql($node, qq{
	CREATE TABLE two (n int, k text, eid text);
	SELECT tributary.create_stream('two', 'two', 'redis',
		'{"url": "$url", "stream": ["two_a", "two_b"], "batch_size": 50, "metadata": {"stream": "k", "id": "eid"}}');
});
my @two_a = $redis->xadd_bulk('two_a', [ map { [ n => $_ ] } 1 .. 300 ]);
my @two_b = $redis->xadd_bulk('two_b', [ map { [ n => $_ ] } 1 .. 200 ]);
check_entry_ids($node, 'two', 'eid', 'two', [ @two_a, @two_b ], 'two keys');
is( sql($node, q{SELECT string_agg(k || ':' || count, ',' ORDER BY k) FROM (SELECT k, count(*) FROM two GROUP BY k) c}),
	'two_a:300,two_b:200', 'two keys: each row knows its key');
is( sql($node, q{SELECT string_agg(concat_ws('|', source_stream, source_partition, position), ',' ORDER BY source_stream)
                 FROM tributary.offsets WHERE stream = 'two'}),
	"two_a||$two_a[-1],two_b||$two_b[-1]", 'two keys: one stored position per key, the last entry id');
ok( wait_for(
		$node, q{SELECT string_agg(concat_ws('|', topic, coalesce(partition::text, 'NULL'), messages, rows,
		                                     coalesce(current_offset::text, 'NULL'), lag), ',' ORDER BY topic)
		           || ' ' || (SELECT messages || '|' || lag FROM tributary.stream_stats WHERE stream = 'two' AND topic IS NULL)
		         FROM tributary.stream_stats WHERE stream = 'two' AND topic IS NOT NULL},
		'two_a|NULL|300|300|NULL|0,two_b|NULL|200|200|NULL|0 500|0', 30),
	'two keys: stream_stats has a row per key (no partition, no offset) with its counts and the group\'s lag (0), the stream row sums them');
done_with('two');

# ---------------------------------------------------------------------------------------
# A unix socket url, with a database number: the key of database 2, not of database 0.

sql($node, q{CREATE TABLE sock (n int)});
sql($node, qq{SELECT tributary.create_stream('sock', 'sock', 'redis',
	'{"url": "@{[ $redis->unix_url(db => 2) ]}", "stream": "sockkey"}')});
$redis->xadd_bulk('sockkey', [ map { [ n => $_ ] } 1 .. 10 ]);    # database 0
$redis->command('SELECT', 2);
$redis->xadd_bulk('sockkey', [ map { [ n => $_ ] } 101 .. 130 ]);
$redis->command('SELECT', 0);
ok(wait_for($node, q{SELECT count(*) || '/' || min(n) FROM sock}, '30/101', 60),
	'unix socket with ?db=2: the 30 entries of database 2 arrive, none of database 0');
done_with('sock');

# ---------------------------------------------------------------------------------------
# Entries another consumer of the group read and never acknowledged: claimed and stored
# exactly once, then acknowledged.

my @pend = $redis->xadd_bulk('pend', [ map { [ n => $_ ] } 1 .. 100 ]);
$redis->command('XGROUP', 'CREATE', 'pend', 'shared', '0');
$redis->cli('XREADGROUP', 'GROUP', 'shared', 'other', 'COUNT', '40', 'STREAMS', 'pend', '>');
is($redis->xpending('pend', 'shared')->{consumers}{other}, 40, 'pending: consumer "other" holds 40 entries');
sql($node, qq{
	CREATE TABLE pend (n int, eid text);
	SELECT tributary.create_stream('pend', 'pend', 'redis',
		'{"url": "$url", "stream": "pend", "group": "shared", "consumer": "mine", "batch_size": 25,
		  "metadata": {"id": "eid"}}');
});
check_entry_ids($node, 'pend', 'eid', 'pend', \@pend, 'pending of another consumer');
ok(redis_wait(sub { $redis->xpending('pend', 'shared')->{count} == 0 }, 30),
	'pending: every entry acknowledged in the end')
  or diag(explain($redis->xpending('pend', 'shared')));
ok( (grep { $_->{name} eq 'mine' } $redis->xinfo_consumers('pend', 'shared')),
	'pending: the consumer option names the consumer ("mine")')
  or diag(explain([ $redis->xinfo_consumers('pend', 'shared') ]));
done_with('pend');

# ---------------------------------------------------------------------------------------
# A user and password in the url: the stream authenticates; its non-admin owner sees the
# password masked; a wrong password is reported, never logged.

my $secret = 'S3kr1t-never-logged';
$redis->command('ACL', 'SETUSER', 'app', 'on', ">$secret", '~*', '&*', '+@all');
my $auth_url = $redis->url(user => 'app', password => $secret);
my $bad_url = $redis->url(user => 'app', password => "$secret-wrong");
my $log_offset = -s $node->logfile;
sql($node, qq{
	SET log_statement = 'none';
	CREATE ROLE rita LOGIN;
	CREATE TABLE rita_t (n int);
	ALTER TABLE rita_t OWNER TO rita;
	CREATE TABLE rita_bad (n int);
	ALTER TABLE rita_bad OWNER TO rita;
	SET ROLE rita;
	SELECT tributary.create_stream('rita', 'rita_t', 'redis', '{"url": "$auth_url", "stream": "authkey"}');
	SELECT tributary.create_stream('rita_bad', 'rita_bad', 'redis', '{"url": "$bad_url", "stream": "authkey"}');
});
$redis->xadd_bulk('authkey', [ map { [ n => $_ ] } 1 .. 10 ]);
ok(wait_for($node, 'SELECT count(*) FROM rita_t', '10', 60), 'password: the stream authenticates and consumes');
is(sql($node, q{SET ROLE rita; SELECT options ->> 'url' FROM tributary.streams WHERE name = 'rita'}),
	"redis://app:********\@127.0.0.1:$port", 'password: masked for its non-admin owner');
is(sql($node, q{SELECT options ->> 'url' FROM tributary.streams WHERE name = 'rita'}),
	$auth_url, 'password: shown to a superuser');
ok(wait_for($node, q{SELECT last_error IS NOT NULL FROM tributary.streams WHERE name = 'rita_bad'}, 't', 60),
	'wrong password: reported in last_error');
is( sql($node, q{SELECT state || '/' || (SELECT count(*) FROM rita_bad) FROM tributary.streams WHERE name = 'rita_bad'}),
	'running/0', 'wrong password: the stream stays running and stores nothing');
unlike(sql($node, q{SELECT last_error FROM tributary.streams WHERE name = 'rita_bad'}), qr/\Q$secret\E/,
	'wrong password: last_error does not show it');
sql($node, q{SELECT tributary.stop('rita_bad')});

# ---------------------------------------------------------------------------------------
# Options refused, with the SQLSTATE and the option named.

sql($node, q{CREATE TABLE bad (n int, o bigint, k text)});
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "rediss://127.0.0.1:$port", "stream": "k"}')}),
	qr/ERROR:  0A000: .*/, 'rediss:// is refused with 0A000 (feature_not_supported)');
like(fails_with(qq{SELECT tributary.alter_stream('later', '{"url": "rediss://127.0.0.1:$port"}')}),
	qr/ERROR:  0A000: .*/, 'rediss:// is refused by alter_stream too');
is(sql($node, q{SELECT options ->> 'url' FROM tributary.streams WHERE name = 'later'}), $url,
	'the refused alter_stream changed nothing');
like(fails_with(q{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"stream": "k"}')}),
	qr/ERROR:  22023: .*option "url"/, 'a missing url is refused');
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "$url"}')}),
	qr/ERROR:  22023: .*option "stream"/, 'a missing stream is refused');
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "$url", "stream": ["a", "a"]}')}),
	qr/ERROR:  22023: .*option "stream"/, 'a key listed twice is refused');
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "http://127.0.0.1:$port", "stream": "k"}')}),
	qr/ERROR:  22023: .*option "url"/, 'a url of another scheme is refused');
like( fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis',
		'{"url": "$url", "stream": "k", "format": "csv", "columns": ["n"], "fields": {"n": "text"}}')}),
	qr/ERROR:  22023: .*option "fields"/, 'a fields object with format csv is refused');
like( fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "$url", "stream": "k", "fields": {"n": "xml"}}')}),
	qr/ERROR:  22023: .*option "fields"/, 'a fields object with a rule other than json or text is refused');
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "$url", "stream": "k", "format": "text"}')}),
	qr/ERROR:  22023: .*option "fields"/, 'format text without a fields string is refused');
for my $m (qw(offset partition topic key headers))
{
	my $col = $m eq 'offset' || $m eq 'partition' ? 'o' : 'k';
	like( fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis',
			'{"url": "$url", "stream": "k", "metadata": {"$m": "$col"}}')}),
		qr/ERROR:  22023: .*option "metadata"/, "Kafka's metadata name \"$m\" is refused on a redis stream");
}
for my $m (qw(stream id))
{
	like( fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'kafka',
			'{"brokers": "127.0.0.1:9", "topic": "t", "metadata": {"$m": "k"}}')}),
		qr/ERROR:  22023: .*option "metadata"/, "Redis's metadata name \"$m\" is refused on a kafka stream");
}
like(fails_with(qq{SELECT tributary.create_stream('bad', 'bad', 'redis', '{"url": "$url", "stream": "k", "start": "yesterday"}')}),
	qr/ERROR:  22023: .*option "start"/, 'a start that is no entry id, "0" or "\$" is refused');
is(sql($node, q{SELECT count(*) FROM tributary.streams WHERE name = 'bad'}), '0', 'no refused stream was created');

# ---------------------------------------------------------------------------------------
# The password never reached the server log; no worker exited.

my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/\Q$secret\E/, 'the password never reaches the server log');
unlike(slurp_file($node->logfile), qr/worker #\d+ of stream "\w+" exited/, 'no worker exited');

$node->stop;
ok($redis->stop, 'redis-server stops cleanly');
done_testing();
