#!/usr/bin/env bash
# bench/redis_ingest.sh: rows/s from a Redis stream into a typed table, against raw COPY and
# against the XREAD | psql loop one scripts instead.
#
# On one box in one run: builds and installs tributary, starts a private throwaway cluster set
# up for bulk load (as bench/kafka_ingest.sh does) and a redis-server of its own on a free
# loopback port (no persistence, in the temporary directory, stopped at exit), and loads N
# entries into the Redis stream key `bench` with one `redis-cli --pipe` (RESP written by awk):
# each entry `XADD bench * id <i> name user-<i % 10000> at <time> value <float> tag tag-<i % 37>`,
# the Kafka benchmark's five values as field-value pairs (about 100 bytes of them). Then
# each contender loads the same rows, on a freshly truncated and checkpointed table
# t (id bigint, name text, at timestamptz, value float8, tag text), the Kafka benchmark's:
#
#   tributary   a redis stream created with only url, stream and format json (tributary's
#               defaults: batch_size 10000, the pairs as one JSON object of strings, a
#               consumer group of its own), timed from the create_stream call until all N
#               rows are committed; the time to the first row is reported apart, and the
#               rate after it is the issue's measure. Each run is a new stream (so a new
#               group, reading the key from its first entry). The worker's memory is sampled
#               every second, its CPU time read from /proc. After each run: exactly N rows,
#               N distinct ids, no dead letters.
#   tributary_payload  the same with the message as one JSON text in one field (key
#               `bench_payload`, entries `XADD bench_payload * payload {"id":1,...}`, the
#               Kafka benchmark's messages) and "fields": "payload": the JSON the Kafka
#               stream reads, typed values (numbers as numbers)
#   copy_csv    COPY t FROM a CSV file of the same rows, written once up front
#   xread_psql  a bash loop of `redis-cli XREAD COUNT 10000 STREAMS bench <last id>`, its
#               output turned into CSV lines by awk, all piped into one
#               `psql -c "\copy t FROM STDIN (FORMAT csv)"` (what a user scripts instead;
#               one COPY for all N rows, no quoting, since these values hold no comma or
#               quote, no consumer group and no stored position)
#
# RUNS runs of each; the best is reported, with seconds, rows/s, % of copy_csv and the
# ratio to xread_psql; for tributary also the rate after its first rows. The first and last
# rows are seen by polling every 0.2 s: keep N large enough for runs of several seconds.
#
# Usage: bench/redis_ingest.sh [N=1000000]
# Environment:
#   RUNS=2          runs per contender
#   TIMEOUT=600     seconds a tributary run may take before the script gives up
#   PERF=1          one more tributary run, not counted, under `perf record -a -g` for
#                   PERF_SECONDS (2) once rows flow; prints where the CPUs went (the worker,
#                   redis-server, the rest) and the worker's and redis-server's top symbols
#   PERF_MODE=payload  with PERF=1, profile a tributary_payload run instead of a pairs one
#   KEEP_TMP=1      keep the cluster's files, the data files and perf.data
# Run by hand; tests never run it, and nothing here asserts on timing.
set -euo pipefail

n="${1:-1000000}"
runs="${RUNS:-2}"
timeout_s="${TIMEOUT:-600}"
perf_seconds="${PERF_SECONDS:-2}"

usage() { sed -n 's/^# Usage: /usage: /p' "${BASH_SOURCE[0]}" >&2; }
for v in "$n" "$runs" "$timeout_s" "$perf_seconds"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage; echo "not a positive integer: '$v'" >&2; exit 2; }
done
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	{ echo "redis-server and redis-cli are needed (tools/bootstrap.sh installs them)" >&2; exit 2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
# shellcheck source=test/lib/redis.sh
source test/lib/redis.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-rbench.XXXXXX")"
redis_pid=""
helper_pid=""	# the memory sampler or perf of the current tributary run
cleanup() {
	local rc=$?
	set +e
	if [ -n "$helper_pid" ]; then
		kill "$helper_pid" 2>/dev/null
		wait "$helper_pid" 2>/dev/null
	fi
	trib_cluster_stop "$tmp"
	if [ -n "$redis_pid" ]; then
		kill -TERM "$redis_pid" 2>/dev/null
		wait "$redis_pid" 2>/dev/null
	fi
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "files kept in $tmp"; else rm -rf "$tmp"; fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

fail() {
	echo "redis_ingest: FAILED: $*" >&2
	if [ -f "$tmp/log/postgresql.log" ]; then
		echo "--- last lines of the server log:" >&2
		tail -n 30 "$tmp/log/postgresql.log" >&2
	fi
	if [ -s "$tmp/redis/log" ]; then
		echo "--- last lines of redis-server's log:" >&2
		tail -n 10 "$tmp/redis/log" >&2
	fi
	exit 1
}

trib_cluster_start "$tmp" "tributary.database = 'postgres'" "tributary.naptime = '1s'" \
	"shared_buffers = '1GB'" "max_wal_size = '8GB'" "checkpoint_timeout = '30min'" \
	"synchronous_commit = off" "max_worker_processes = 32" >/dev/null
sql() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# redis-server: a child of this script, on a free loopback port, nothing saved to disk.
trib_redis_start "$tmp/redis" || fail "redis-server did not start"
rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
redis_version="$(rcli INFO server | sed -n 's/^redis_version:\([^\r]*\).*/\1/p')"

echo "== cluster on $PGHOST (PostgreSQL $(sql -c 'SHOW server_version')), redis-server" \
	"$redis_version at 127.0.0.1:$redis_port (pid $redis_pid)"

# The rows, once: the same text values go into the entries, the JSON payloads and the CSV file.
sql <<SQL
CREATE EXTENSION tributary;
CREATE TABLE t (id bigint, name text, at timestamptz, value float8, tag text);
CREATE UNLOGGED TABLE src AS
SELECT i, 'user-' || i % 10000 AS name,
       to_char(timestamp '2026-11-23' + i * interval '1 millisecond',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       ((i % 100000) / 7.0)::float8 AS value, 'tag-' || i % 37 AS tag
FROM generate_series(1, $n) AS i;
COPY (SELECT i, name, at, value, tag FROM src ORDER BY i) TO '$tmp/rows.csv' WITH (FORMAT csv);
COPY (SELECT format('{"id":%s,"name":"%s","at":"%s","value":%s,"tag":"%s"}', i, name, at, value, tag)
      FROM src ORDER BY i) TO '$tmp/msgs.json';
DROP TABLE src;

$(bench_wait_sql)
SQL
if grep -q '["\\ ]' "$tmp/rows.csv" || awk -F, 'NF != 5 { bad = 1 } END { exit !bad }' "$tmp/rows.csv"; then
	fail "the generated rows hold quotes, backslashes, spaces or commas inside values"
fi

# Load: RESP for XADD, written by awk (bytes = characters: every value is ASCII), one
# redis-cli --pipe per key.
resp() {	# key, then lines of "field value field value ..." (no spaces inside values)
	LC_ALL=C awk -v key="$1" 'BEGIN { ORS = "" }
	{
		printf "*%d\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n", NF + 3, length(key), key
		for (i = 1; i <= NF; i++) printf "$%d\r\n%s\r\n", length($i), $i
	}'
}
t0="$(now_ms)"
awk -F, '{ print "id", $1, "name", $2, "at", $3, "value", $4, "tag", $5 }' "$tmp/rows.csv" |
	resp bench >"$tmp/redis/bench.resp"
awk '{ print "payload", $0 }' "$tmp/msgs.json" | resp bench_payload >"$tmp/redis/payload.resp"
echo "RESP written in $(secs $(($(now_ms) - t0))) s"
for key in bench payload; do
	t0="$(now_ms)"
	rcli --pipe <"$tmp/redis/$key.resp" >"$tmp/redis/pipe.out" 2>&1 ||
		fail "redis-cli --pipe: $(tail -n 3 "$tmp/redis/pipe.out")"
	grep -q "errors: 0, replies: $n" "$tmp/redis/pipe.out" ||
		fail "redis-cli --pipe: $(tail -n 1 "$tmp/redis/pipe.out")"
	echo "loaded $n entries into $([ "$key" = bench ] && echo bench || echo bench_payload)" \
		"with redis-cli --pipe in $(secs $(($(now_ms) - t0))) s"
done
rm -f "$tmp"/redis/*.resp
[ "$(rcli XLEN bench)" = "$n" ] || fail "key bench holds $(rcli XLEN bench) entries, not $n"
[ "$(rcli XLEN bench_payload)" = "$n" ] || fail "key bench_payload holds $(rcli XLEN bench_payload) entries, not $n"
echo "an entry of bench: $(rcli XRANGE bench - + COUNT 1 | tr '\n' ' ')"
echo "an entry of bench_payload: $(rcli XRANGE bench_payload - + COUNT 1 | tr '\n' ' ')"
echo "redis-server memory: $(rcli INFO memory | sed -n 's/^used_memory_human:\([^\r]*\).*/\1/p')"

# Once the stream's rows flow: perf record -a -g for PERF_SECONDS, and which pid is which.
profile_worker() {	# stream
	local pid i perf_pid postmaster p
	pid="$(worker_pid "$1" 60)" || return 0
	for ((i = 0; i < 300; i++)); do
		[ "$(sql -c "SELECT coalesce(sum(rows), 0) FROM tributary.stream_stats
		             WHERE stream = '$1' AND topic IS NULL")" -gt 0 ] && break
		sleep 0.2
	done
	perf record -a -g -o "$tmp/perf.data" -- sleep "$perf_seconds" >"$tmp/perf.log" 2>&1 &
	perf_pid=$!
	postmaster="$(head -n 1 "$TRIB_PGDATA/postmaster.pid")"
	{
		echo "0 idle"
		echo "$pid worker"
		echo "$redis_pid redis"
		for p in $postmaster $(ps -o pid= --ppid "$postmaster"); do
			[ "$p" = "$pid" ] || echo "$p server"
		done
	} >"$tmp/perf.roles" 2>/dev/null || true
	wait "$perf_pid" || true
}

redis_cpu() { cpu_ms "/proc/$redis_pid/stat"; }

# One tributary run on a fresh stream; sets run_ms, join_ms, rss_line, cpu_proc_ms (the
# worker's CPU time: one thread) and redis_cpu_run_ms (redis-server's CPU time during the run).
tributary_run() {	# run label, pairs|payload, "profile" to run perf alongside
	local stream="bench_$1" t0 out first_ms last_ms rss_file="$tmp/rss.$1" options
	case "$2" in
	pairs) options="{\"url\": \"redis://127.0.0.1:$redis_port\", \"stream\": \"bench\", \"format\": \"json\"}" ;;
	payload) options="{\"url\": \"redis://127.0.0.1:$redis_port\", \"stream\": \"bench_payload\", \"format\": \"json\", \"fields\": \"payload\"}" ;;
	esac
	fresh t
	: >"$rss_file"
	if [ "${3:-}" = profile ]; then profile_worker "$stream" & else sample_rss "$stream" "$rss_file" & fi
	helper_pid=$!
	redis_cpu0="$(redis_cpu)"
	t0="$(now_ms)"
	if ! out="$(sql <<SQL
SELECT tributary.create_stream('$stream', 't', 'redis', '$options');
SELECT first_ms, done_ms FROM bench_wait('$stream', 't', $n, 'stats', $timeout_s);
SQL
)"; then
		sql -c "SELECT name, state, worker_pid, last_error FROM tributary.streams" >&2 || true
		fail "tributary run $1 did not complete"
	fi
	IFS='|' read -r first_ms last_ms <<<"$(tail -n 1 <<<"$out")"
	redis_cpu_run_ms=$(($(redis_cpu) - redis_cpu0))
	cpu_proc_ms=0
	p="$(sql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: $stream'")"
	if [ -n "$p" ]; then
		cpu_proc_ms="$(cpu_ms "/proc/$p/stat")"
	fi
	run_ms=$((last_ms - t0))
	join_ms=$((first_ms - t0))
	[ "${3:-}" = profile ] || kill "$helper_pid" 2>/dev/null || true
	wait "$helper_pid" 2>/dev/null || true
	helper_pid=""
	out="$(sql -c "SELECT count(*), count(DISTINCT id) FROM t" \
		-c "SELECT count(*) FROM tributary.dead_letters WHERE stream = '$stream'")"
	[ "$out" = "$n|$n"$'\n'"0" ] ||
		fail "tributary run $1 stored (rows|distinct ids, dead letters) $(tr '\n' ' ' <<<"$out"), expected $n|$n 0"
	drop_stream "$stream"
	rss_line="$(rss_summary "$rss_file")"
}

best_copy="" best_xread=""
declare -A best_trib=() best_join=() best_rss=() best_cpu=()
echo "load average before measuring: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== copy_csv: COPY t FROM the CSV file"
for r in $(seq "$runs"); do
	fresh t
	t0="$(now_ms)"
	sql -c "COPY t FROM '$tmp/rows.csv' WITH (FORMAT csv)" >/dev/null
	ms=$(($(now_ms) - t0))
	[ "$(sql -c 'SELECT count(*) FROM t')" = "$n" ] || fail "copy_csv did not store $n rows"
	echo "  run $r: $(secs "$ms") s, $(rate "$n" "$ms") rows/s"
	if [ -z "$best_copy" ] || [ "$ms" -lt "$best_copy" ]; then best_copy="$ms"; fi
done
# One more COPY, untimed, for the backend's CPU time.
fresh t
sql -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(0.5)" \
	-c "COPY t FROM '$tmp/rows.csv' WITH (FORMAT csv)" -c "SELECT 'copied'" -c "SELECT pg_sleep(1)" \
	>"$tmp/copy.out" &
copy_psql=$!
until [ -s "$tmp/copy.out" ]; do sleep 0.05; done
copy_pid="$(head -n 1 "$tmp/copy.out")"
copy_cpu0="$(cpu_ms "/proc/$copy_pid/stat")"
until grep -q copied "$tmp/copy.out"; do sleep 0.05; done
best_copy_cpu=$(($(cpu_ms "/proc/$copy_pid/stat") - copy_cpu0))
wait "$copy_psql"
echo "  COPY's backend CPU: $best_copy_cpu ms"

echo
echo "== xread_psql: a loop of redis-cli XREAD COUNT 10000 | awk, piped into one psql \\copy t FROM STDIN"
# What a user scripts: read 10000 entries after the last id seen, print them as CSV (the
# reply, in redis-cli's raw output, is the key, then per entry its id and 5 field-value
# pairs, one per line), until XREAD returns nothing.
xread_loop() {
	local last="0-0" out="$tmp/xread.batch"
	while :; do
		rcli XREAD COUNT 10000 STREAMS bench "$last" >"$out"
		[ "$(wc -l <"$out")" -gt 1 ] || break
		last="$(awk 'NR > 1 && (NR - 2) % 11 == 0 { id = $0 } END { print id }' "$out")"
		awk 'NR > 1 { k = (NR - 2) % 11
		              if (k == 2) row = $0; else if (k > 2 && k % 2 == 0) row = row "," $0
		              if (k == 10) print row }' "$out"
	done
}
for r in $(seq "$runs"); do
	fresh t
	redis_cpu0="$(redis_cpu)"
	t0="$(now_ms)"
	xread_loop | sql -c "\\copy t FROM STDIN (FORMAT csv)" >/dev/null || fail "the XREAD | psql loop failed"
	ms=$(($(now_ms) - t0))
	[ "$(sql -c 'SELECT count(*), count(DISTINCT id) FROM t')" = "$n|$n" ] ||
		fail "xread_psql did not store $n rows with distinct ids"
	echo "  run $r: $(secs "$ms") s, $(rate "$n" "$ms") rows/s; redis-server CPU $(secs $(($(redis_cpu) - redis_cpu0))) s"
	if [ -z "$best_xread" ] || [ "$ms" -lt "$best_xread" ]; then best_xread="$ms"; fi
done

for mode in pairs payload; do
	echo
	case "$mode" in
	pairs) echo "== tributary: a redis stream per run, only url, stream and format (key bench, field-value pairs)" ;;
	payload) echo "== tributary_payload: the same with \"fields\": \"payload\" (key bench_payload, one JSON text per entry)" ;;
	esac
	for r in $(seq "$runs"); do
		tributary_run "$mode$r" "$mode"
		echo "  run $r: $(secs "$run_ms") s, $(rate "$n" "$run_ms") rows/s; first rows after" \
			"$(secs "$join_ms") s, then $(rate "$n" $((run_ms - join_ms))) rows/s;" \
			"$n rows, $n distinct ids, 0 dead letters"
		echo "         worker memory: $rss_line"
		echo "         CPU: the worker $(secs "$cpu_proc_ms") s, redis-server $(secs "$redis_cpu_run_ms") s" \
			"($(awk -v c="$redis_cpu_run_ms" -v n="$n" 'BEGIN { printf "%.2f", 1000 * c / n }') us per entry)"
		if [ -z "${best_trib[$mode]:-}" ] || [ "$run_ms" -lt "${best_trib[$mode]}" ]; then
			best_trib[$mode]="$run_ms" best_join[$mode]="$join_ms" best_rss[$mode]="$rss_line"
			best_cpu[$mode]="$cpu_proc_ms $redis_cpu_run_ms"
		fi
	done
done

if [ "${PERF:-0}" = 1 ]; then
	echo
	echo "== perf: one more tributary run (not counted), perf record -a -g for $perf_seconds s once rows flow"
	tributary_run perf "${PERF_MODE:-pairs}" profile
	echo "  (that run: $(secs "$run_ms") s, first rows after $(secs "$join_ms") s)"
	if [ -s "$tmp/perf.data" ] && [ -s "$tmp/perf.roles" ]; then
		report() { perf report -i "$tmp/perf.data" --no-children -g none --stdio "$@" 2>/dev/null |
			grep '%' | grep -v '^#' | sed -E 's/^( *[0-9.]+%) +[0-9]+:([^ ]+)/\1  \2/' || true; }
		echo "  where the CPU time went in those $perf_seconds s (of $((perf_seconds * $(nproc))) CPU-s), by process:"
		perf report -i "$tmp/perf.data" --no-children -g none --stdio -F period,pid 2>/dev/null |
			grep -v '^#' | awk '
			FILENAME == ARGV[1] { role[$1] = $2; next }
			NF >= 2 && $1 ~ /^[0-9]+$/ {
				split($2, t, ":"); r = (t[1] in role) ? role[t[1]] : "other"; sum[r] += $1 / 1e9; all += $1 / 1e9
			}
			END {
				split("worker redis server other idle", order, " ")
				name["worker"] = "the stream worker (read, JSON, insert, WAL)"
				name["redis"] = "redis-server"
				name["server"] = "the server'"'"'s other processes (WAL writer, poller, ...)"
				name["other"] = "other processes on the box"
				name["idle"] = "idle"
				for (i = 1; i <= 5; i++) printf "    %5.2f CPU-s  %s\n", sum[order[i]], name[order[i]]
				printf "    %5.2f CPU-s  sampled in all\n", all
			}' "$tmp/perf.roles" -
		wpid="$(awk '$2 == "worker" { print $1 }' "$tmp/perf.roles")"
		echo "  the worker, top symbols by self time (% of the worker):"
		report -F overhead,pid,dso,sym --pid "$wpid" --percentage relative --percent-limit 0.8 |
			head -n 40 | sed 's/^/  /'
		echo "  the worker, by library (% of the worker):"
		report -F overhead,dso --pid "$wpid" --percentage relative --percent-limit 0.5 |
			head -n 12 | sed 's/^/  /'
		echo "  redis-server, top symbols by self time (% of redis-server):"
		report -F overhead,pid,dso,sym --pid "$redis_pid" --percentage relative --percent-limit 3 |
			head -n 10 | sed 's/^/  /'
	else
		echo "  perf recorded nothing: $(cat "$tmp/perf.log" 2>/dev/null)"
	fi
fi

echo
echo "== results: $n entries, best of $runs runs each, on $(nproc) CPUs" \
	"(load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-46s %9s %11s %10s\n' contender seconds rows/s "% of COPY"
row() { printf '%-46s %9s %11s %10s\n' "$1" "$(secs "$2")" "$(rate "$n" "$2")" "$(pct "$2")"; }
row "copy_csv (COPY t FROM csv file)" "$best_copy"
row "tributary (create_stream .. N rows)" "${best_trib[pairs]}"
row "  after its first rows" $((best_trib[pairs] - best_join[pairs]))
row "tributary_payload (create_stream .. N rows)" "${best_trib[payload]}"
row "  after its first rows" $((best_trib[payload] - best_join[payload]))
row "xread_psql (XREAD loop | psql \\copy)" "$best_xread"
for mode in pairs payload; do
	name="tributary"
	[ "$mode" = pairs ] || name="tributary_$mode"
	awk -v name="$name" -v c="$best_copy" -v t="${best_trib[$mode]}" -v x="$best_xread" \
		-v j="${best_join[$mode]}" 'BEGIN {
		printf "%s: first rows after %.2f s; %.2fx xread_psql (after its first rows %.2fx)\n", name, j / 1000, x / t, x / (t - j)
		printf "  target >= 0.8x raw COPY after the first rows: %s (%.2fx)\n", (c / (t - j) >= 0.8 ? "met" : "missed"), c / (t - j)
	}'
	read -r cp cr <<<"${best_cpu[$mode]}"
	awk -v n="$n" -v cp="$cp" -v cr="$cr" -v cc="$best_copy_cpu" -v t="${best_trib[$mode]}" 'BEGIN {
		printf "  CPU per row (best run): the worker %.2f us (busy %d %% of the run), redis-server %.2f us; COPY'"'"'s backend %.2f us (worker %.2fx)\n",
			1000 * cp / n, 100 * cp / t, 1000 * cr / n, 1000 * cc / n, (cc > 0 ? cp / cc : 0)
	}'
	echo "  worker memory (best run): ${best_rss[$mode]}"
done
