# Bounded memory per message: what one large message costs the backend that ingests it.
#
# Each measurement runs in a fresh backend and reads the backend's own peak resident set
# (VmHWM in /proc/self/status) before and after one statement. The payload is built
# server-side (a 1 MiB block of md5 hex, repeated), so no SQL literal of that size sits
# in the query buffer; hex text is the worst case for pglz, which writes most of its
# output before giving up. The cost of a message is the peak gained by ingesting it
# minus the peak gained by a baseline statement that builds the same payload without
# ingesting it. shared_buffers is small so that buffers the inserts touch (shared memory
# counts in the resident set) add at most a few MB.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TributaryTest;

my $MB = 1024 * 1024;

# What a statement's peak may gain besides the message: the shared buffers its inserts
# touch (16MB) and the catalog entries, plans and SPI state of a first ingest.
my $SLACK = 32 * $MB;

my $node = tributary_node('memory', conf => "shared_buffers = '16MB'");

$node->safe_psql('postgres', q{
	CREATE FUNCTION vm(field text) RETURNS bigint LANGUAGE sql AS $$
		SELECT (pg_catalog.regexp_match(pg_catalog.pg_read_file('/proc/self/status'),
			field || ':\s+(\d+) kB'))[1]::bigint * 1024
	$$;
	CREATE TABLE block AS
		SELECT string_agg(md5(i::text), '') AS b FROM generate_series(1, 32768) i;

	CREATE TABLE docs (
		id       bigint GENERATED ALWAYS AS IDENTITY,
		body     text NOT NULL CHECK (body <> ''),
		received timestamptz NOT NULL DEFAULT now()
	);
	SELECT tributary.create_stream('docs', 'docs', 'local', '{"format": "text", "column": "body"}');
	CREATE TABLE blobs (id bigint GENERATED ALWAYS AS IDENTITY, data bytea NOT NULL);
	SELECT tributary.create_stream('blobs', 'blobs', 'local', '{"format": "bytes", "column": "data"}');
	CREATE TABLE posts (id bigint, title text, body text);
	SELECT tributary.create_stream('posts', 'posts', 'local', '{"format": "json"}');
	CREATE TABLE events (id bigint, doc jsonb NOT NULL);
	SELECT tributary.create_stream('events', 'events', 'local', '{"format": "json"}');
	CREATE TABLE rows_csv (id bigint, note varchar);
	SELECT tributary.create_stream('rows_csv', 'rows_csv', 'local', '{"format": "csv", "columns": ["id", "note"]}');
});

# The peak resident memory a fresh backend gains while running $sql, in bytes.
sub peak_gain
{
	my ($sql) = @_;
	my @out = split /\n/,
	  $node->safe_psql('postgres', "SELECT vm('VmHWM'); $sql; SELECT vm('VmHWM');");
	return $out[-1] - $out[0];
}

# What ingesting $payload_sql (an expression of $mb MiB) costs beyond building it.
sub message_cost
{
	my ($stream, $payload_sql, $set) = @_;
	my $base = peak_gain("SELECT octet_length($payload_sql)");
	my $ingest = peak_gain("$set SELECT accepted FROM tributary.ingest('$stream', $payload_sql)");
	return $ingest - $base;
}

sub fmt_mb { return sprintf('%.0f MB', $_[0] / $MB); }

my $set = "SET tributary.max_message_size = '128MB';";

# accepted: a 100 MiB text message into one text column
my $cost = message_cost('docs', 'repeat((SELECT b FROM block), 100)', $set);
diag('text, 100 MiB accepted: ' . fmt_mb($cost) . ' beyond holding the message');
cmp_ok($cost, '<=', 3 * 100 * $MB + $SLACK,
	'an accepted 100 MiB text message costs at most three times its size');
is($node->safe_psql('postgres', 'SELECT octet_length(body) = 100 * 1024 * 1024 FROM docs'),
	't', 'the whole message landed');

# accepted: a 100 MiB message into one bytea column
$cost = message_cost('blobs', 'repeat((SELECT b FROM block), 100)', $set);
diag('bytes, 100 MiB accepted: ' . fmt_mb($cost) . ' beyond holding the message');
cmp_ok($cost, '<=', 3 * 100 * $MB + $SLACK,
	'an accepted 100 MiB bytes message costs at most three times its size');
is($node->safe_psql('postgres', 'SELECT octet_length(data) = 100 * 1024 * 1024 FROM blobs'),
	't', 'the whole bytes message landed');

# json: a 100 MiB string field
$cost = message_cost('posts',
	q{'{"id": 1, "title": "big", "body": "' || repeat((SELECT b FROM block), 100) || '"}'}, $set);
diag('json, 100 MiB string field accepted: ' . fmt_mb($cost) . ' beyond holding the message');
cmp_ok($cost, '<=', 3 * 100 * $MB + $SLACK,
	'an accepted json message with a 100 MiB string costs at most three times its size');
is($node->safe_psql('postgres', 'SELECT octet_length(body) = 100 * 1024 * 1024 FROM posts'),
	't', 'the whole json string landed');

# json: a 100 MiB object for a jsonb column. jsonb's input function parses the value, and
# PostgreSQL's own INSERT of it costs more than three times its size; what tributary adds
# is measured against that INSERT of the same value.
$cost = message_cost('events',
	q{'{"id": 1, "doc": {"kind": "big", "data": "' || repeat((SELECT b FROM block), 100) || '"}}'}, $set);
diag('json, 100 MiB object for a jsonb column accepted: ' . fmt_mb($cost) . ' beyond holding the message');
my $plain = peak_gain(q{INSERT INTO events (id, doc) SELECT 0, ('{"kind": "big", "data": "' || repeat((SELECT b FROM block), 100) || '"}')::jsonb})
  - peak_gain(q{SELECT octet_length('{"kind": "big", "data": "' || repeat((SELECT b FROM block), 100) || '"}')});
diag('a plain INSERT of the same jsonb value: ' . fmt_mb($plain) . ' beyond holding its text');
cmp_ok($cost, '<=', ($plain > 3 * 100 * $MB ? $plain : 3 * 100 * $MB) + $SLACK,
	'an accepted json message with a 100 MiB jsonb value costs at most three times its size, or what INSERT of the value costs');
$node->safe_psql('postgres', 'DELETE FROM events WHERE id = 0');
is( $node->safe_psql('postgres',
		q{SELECT doc ->> 'kind' || ' ' || (octet_length(doc ->> 'data') = 100 * 1024 * 1024) FROM events}),
	'big true', 'the whole jsonb value landed');

# csv: a 100 MiB field for a varchar column
$cost = message_cost('rows_csv', q{'1,' || repeat((SELECT b FROM block), 100)}, $set);
diag('csv, 100 MiB field accepted: ' . fmt_mb($cost) . ' beyond holding the message');
cmp_ok($cost, '<=', 3 * 100 * $MB + $SLACK,
	'an accepted csv message with a 100 MiB field costs at most three times its size');
is($node->safe_psql('postgres', 'SELECT id || \' \' || (octet_length(note) = 100 * 1024 * 1024) FROM rows_csv'),
	'1 true', 'the whole csv field landed');

# a large value its column's input function refuses is the message's fault, as through COPY
is( $node->safe_psql('postgres', q{
		SELECT accepted || '/' || dead_lettered FROM tributary.ingest('events', ARRAY[
			'{"id": 2, "doc": "' || repeat('x', 2 * 1024 * 1024) || '"}',
			'{"id": 3, "doc": {"ok": true}}'])}),
	'2/0', 'a large json string is a valid jsonb value');
is( $node->safe_psql('postgres', q{
		SELECT accepted || '/' || dead_lettered FROM tributary.ingest('rows_csv', ARRAY[
			'2,"' || repeat('y', 2 * 1024 * 1024) || '"', 'x' || repeat('9', 2 * 1024 * 1024) || ',z'])}),
	'1/1', 'a large csv field lands; a large id that is no integer is a dead letter');

# json strings of 1 MiB and more go to COPY as values, not COPY text: escapes decoded,
# constraints checked, and a failing row isolated from its batch as for any other value
$node->safe_psql('postgres', q{
	CREATE TABLE notes (id int PRIMARY KEY, body text CHECK (body NOT LIKE 'bad%'), n int DEFAULT 7);
	SELECT tributary.create_stream('notes', 'notes', 'local', '{"format": "json"}');
});
is( $node->safe_psql('postgres', q{
		SELECT accepted || '/' || dead_lettered FROM tributary.ingest('notes', ARRAY[
			'{"id": 1, "body": "' || repeat('ok', 1024 * 1024) || '"}',
			'{"id": 2, "body": "bad' || repeat('x', 2 * 1024 * 1024) || '"}',
			'{"id": 3, "body": "' || repeat('a\\tb\\n\\"', 250000) || '"}',
			'{"id": 4, "body": "short"}'])}),
	'3/1', 'large json strings land; the one that breaks a constraint is a dead letter');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(id || ':' || (body = CASE id WHEN 1 THEN repeat('ok', 1024 * 1024)
			WHEN 3 THEN repeat(E'a\tb\n"', 250000) ELSE 'short' END) || ':' || n, ',' ORDER BY id)
		FROM notes}),
	'1:true:7,3:true:7,4:true:7', 'with their exact text and the other columns\' defaults');
is( $node->safe_psql('postgres', q{
		SELECT sqlstate || ':' || octet_length(payload) FROM tributary.dead_letters WHERE stream = 'notes'}),
	'23514:' . (2 * 1024 * 1024 + 24), 'the failing message is kept whole');

# rejected: a 300 MiB message over the default limit of 64MB
$cost = message_cost('docs', 'repeat((SELECT b FROM block), 300)', '');
diag('text, 300 MiB rejected: ' . fmt_mb($cost) . ' beyond holding the message');
cmp_ok($cost, '<=', 300 * $MB + $SLACK,
	'rejecting a 300 MiB message costs no more than holding it');
is( $node->safe_psql('postgres', q{
		SELECT sqlstate || '|' || error || '|' || (octet_length(payload) = 300 * 1024 * 1024) || '|' || detail
		FROM tributary.dead_letters WHERE stream = 'docs'}),
	'54000|message is too large|true|The message has 314572800 bytes; '
	  . 'tributary.max_message_size is 67108864 bytes.',
	'the rejected message is a dead letter with its full payload, size and the limit');
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs'), '1', 'and no row');

$node->stop;
done_testing();
