#!/usr/bin/env bash
# bench/kafka_ingest.sh: rows/s from a Kafka topic into a typed table, against raw COPY and
# against the kcat | psql pipeline one scripts instead.
#
# On one box in one run: builds and installs tributary and the local broker, starts a
# private throwaway cluster set up for bulk load and tools/tributary-kafka-mock with a topic
# `bench` of PARTITIONS partitions, and produces N JSON messages (about 105 bytes, 5 fields,
# no backslash escapes) round-robin over the partitions with one kcat per partition. It then
# checks with kcat -Q that the broker still holds all N (the librdkafka 2.0.2 mock keeps only
# about 5 MiB per partition, some 40 000 of these messages) and stops if not. Then each
# contender loads the same rows, on a freshly truncated and checkpointed table:
#
#   tributary   a kafka stream (format json, batch_size BATCH, librdkafka prefetch tuned)
#               into t (id bigint, name text, at timestamptz, value float8, tag text), timed
#               from the create_stream call until all N rows are committed: the worker's
#               start and its consumer group join are included, and the time to the first
#               row is reported apart. Each run is a new stream with a new group, so it
#               reads the topic from the start. The worker's memory is sampled every second
#               from /proc/<pid>/status; it is found by its application_name in
#               pg_stat_activity, 'tributary: <stream>'. After each run: exactly N rows,
#               N distinct ids, no dead letters.
#   tributary_parallel  the static stream with "parallelism": PARALLEL workers, each taking
#               every PARALLEL-th partition
#   tributary_static  the same stream with "partitions": [0 .. PARTITIONS-1]: assigned its
#               partitions directly, as kcat -C is, with no consumer group to join
#   copy_csv    COPY t FROM a CSV file of the same rows, written once up front (the limit:
#               one backend parsing numbers and timestamps)
#   kcat_psql   kcat -C -t bench -e -f '%s\n' | psql -c "COPY t_jsonb(doc) FROM STDIN"
#               into a single jsonb column (what a user scripts instead)
#
# RUNS runs of each; the best is reported, with seconds, rows/s, % of copy_csv and the
# ratio to kcat_psql; for tributary also the rate after its first rows. Last, one message
# with a backslash escape, on a topic of its own, shows that the kcat pipeline aborts its
# whole COPY on it while tributary stores it.
#
# Usage: bench/kafka_ingest.sh [N=1000000] [PARTITIONS=32]
# Environment:
#   RUNS=2          runs per contender (each tributary run is a fresh stream)
#   BATCH=10000     the stream's batch_size
#   PARALLEL=2      the parallelism of tributary_parallel
#   RDKAFKA='{...}' the stream's librdkafka object (default: the prefetch tuning below)
#   DEFAULTS=1      streams as a user creates them: only brokers, topic and format (plus
#                   partitions and parallelism for those contenders); BATCH, RDKAFKA and the
#                   group name are not given, so tributary's defaults apply
#   POLL=stats      how the end of a tributary run is seen, every 0.2 s: `stats` polls the
#                   stream's committed row counter (tributary.stream_stats) and then checks
#                   count(*) = N once; `count` runs count(*) on the target every 0.2 s, which
#                   on a 2-core box takes CPU from the worker it times
#   TIMEOUT=600     seconds a tributary run may take before the script gives up
#   PERF=1          one more tributary run, not counted, under `perf record -a -g` for
#                   PERF_SECONDS (2) once rows flow; prints where the CPUs went (worker
#                   thread, its librdkafka threads, broker, rest) and the top symbols
#   PERF_MODE=static  with PERF=1, profile a static (or parallel) run instead of a group one
#   PERF_OFFCPU=1   with PERF=1, also record the worker thread's switches off the CPU
#                   (sched:sched_switch with stacks) and print where it waits
#   QUALITY=1       every tributary stream keeps continuous quality windows (set_quality
#                   with one-minute windows over `at`, duplicates by `id`, every column)
#   QUALITY_COLUMNS='{value,name,tag,at}'  watch only these columns (issue 10's four: a
#                   float, two texts, a timestamp)
#   LATENESS='0'    the streams' allowed_lateness with QUALITY=1
#   EVENT_MS=1      milliseconds of event time between consecutive messages; 60 gives
#                   issue 10's shape (10^6 rows in about 1000 one-minute windows)
#   PRODUCE_BATCH=10000  messages per producer batch (kcat's batch.num.messages). The broker
#                   hands a batch out whole, so with 10000 a consumer gets each partition's
#                   messages in runs of up to 10000, and partitions drift apart in event
#                   time (what continuous quality windows pay for as amendments); producers
#                   with Kafka's default 16 KiB batches are nearer 200
#   KEEP_TMP=1      keep the cluster's files, the data files and perf.data
# Run by hand; tests never run it, and nothing here asserts on timing.
set -euo pipefail

n="${1:-1000000}"
partitions="${2:-32}"
runs="${RUNS:-2}"
batch="${BATCH:-10000}"
parallel="${PARALLEL:-2}"
poll="${POLL:-stats}"
timeout_s="${TIMEOUT:-600}"
perf_seconds="${PERF_SECONDS:-2}"
# librdkafka's default fetch pacing caps a consumer on the mock near 0.3 M msgs/s: keep a
# deep prefetch queue (still bounded by queued.max.messages.kbytes, 64 MiB by default) and
# do not let the broker sit on fetches.
rdkafka_default='{"queued.min.messages": "1000000", "fetch.wait.max.ms": "10"}'
rdkafka="${RDKAFKA:-$rdkafka_default}"

usage() { sed -n 's/^# Usage: /usage: /p' "${BASH_SOURCE[0]}" >&2; }
for v in "$n" "$partitions" "$runs" "$batch" "$timeout_s" "$perf_seconds"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage; echo "not a positive integer: '$v'" >&2; exit 2; }
done
[ "$n" -ge "$partitions" ] || { usage; echo "N must be at least PARTITIONS" >&2; exit 2; }
case "$poll" in stats | count) ;; *) echo "POLL must be stats or count" >&2; exit 2 ;; esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=test/lib/kafka.sh
source test/lib/kafka.sh

make -s
if [ "$(id -u)" -eq 0 ]; then make -s install; else sudo make -s install; fi
make -s tools

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-kbench.XXXXXX")"
broker_pid=""
helper_pid=""	# the memory sampler or perf of the current tributary run
cleanup() {
	local rc=$?
	set +e
	if [ -n "$helper_pid" ]; then
		kill "$helper_pid" 2>/dev/null
		wait "$helper_pid" 2>/dev/null
	fi
	trib_cluster_stop "$tmp"
	if [ -n "$broker_pid" ]; then
		kill -TERM "$broker_pid" 2>/dev/null
		wait "$broker_pid" 2>/dev/null
	fi
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "files kept in $tmp"; else rm -rf "$tmp"; fi
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

fail() {
	echo "kafka_ingest: FAILED: $*" >&2
	if [ -f "$tmp/log/postgresql.log" ]; then
		echo "--- last lines of the server log:" >&2
		tail -n 30 "$tmp/log/postgresql.log" >&2
	fi
	if [ -s "$tmp/kafka/stderr" ]; then
		echo "--- last lines of the broker's stderr:" >&2
		tail -n 10 "$tmp/kafka/stderr" >&2
	fi
	exit 1
}

trib_cluster_start "$tmp" "tributary.database = 'postgres'" "tributary.naptime = '1s'" \
	"shared_buffers = '1GB'" "max_wal_size = '8GB'" "checkpoint_timeout = '30min'" \
	"synchronous_commit = off" "max_worker_processes = 32" >/dev/null
sql() { trib_as_user psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# The broker: a child of this script (it stops by itself if the script dies). Its start
# can take seconds per partition (see test/lib/kafka.sh), so allow 3 s per partition.
t0="$(now_ms)"
trib_kafka_mock_start "$tmp/kafka" $(((partitions + 1) * 3 + 10)) --brokers 1 \
	--topic "bench:$partitions" --topic escape:1 || fail "the local Kafka broker did not start"
broker_start_ms=$(($(now_ms) - t0))

echo "== cluster on $PGHOST (PostgreSQL $(sql -c 'SHOW server_version')), broker $bootstrap" \
	"(ready after $(secs "$broker_start_ms") s), topic bench with $partitions partitions"

# The rows, once: the same text values go into the JSON messages and the CSV file.
sql <<SQL
CREATE EXTENSION tributary;
CREATE TABLE t (id bigint, name text, at timestamptz, value float8, tag text);
CREATE TABLE t_jsonb (doc jsonb);
CREATE UNLOGGED TABLE src AS
SELECT i, 'user-' || i % 10000 AS name,
       to_char(timestamp '2026-11-23' + i * interval '${EVENT_MS:-1} milliseconds',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       ((i % 100000) / 7.0)::float8 AS value, 'tag-' || i % 37 AS tag
FROM generate_series(1, $n) AS i;
COPY (SELECT format('{"id":%s,"name":"%s","at":"%s","value":%s,"tag":"%s"}', i, name, at, value, tag)
      FROM src ORDER BY i) TO '$tmp/msgs.json';
COPY (SELECT i, name, at, value, tag FROM src ORDER BY i) TO '$tmp/rows.csv' WITH (FORMAT csv);
DROP TABLE src;

$(bench_wait_sql)
SQL
if grep -q '[\]' "$tmp/msgs.json"; then fail "the generated messages hold backslashes"; fi
bytes="$(wc -c <"$tmp/msgs.json")"
echo "messages: $n, $((bytes / n - 1)) bytes on average; e.g. $(head -n 1 "$tmp/msgs.json")"

# Produce: message i to partition (i - 1) % PARTITIONS, one kcat per partition, 4 at a time.
awk -v p="$partitions" -v dir="$tmp/kafka" '{ print > (dir "/part." ((NR - 1) % p)) }' "$tmp/msgs.json"
produce() {
	kcat -P -b "$bootstrap" -t bench -p "$1" -X linger.ms=20 -X batch.num.messages="${PRODUCE_BATCH:-10000}" \
		-X queue.buffering.max.messages=1000000 -X message.timeout.ms=60000 \
		<"$tmp/kafka/part.$1" 2>"$tmp/kafka/produce.$1.err"
}
t0="$(now_ms)"
pids=()
for ((p = 0; p < partitions; p++)); do
	produce "$p" &
	pids+=("$!:$p")
	if [ "${#pids[@]}" -eq 4 ] || [ "$p" -eq $((partitions - 1)) ]; then
		for pp in "${pids[@]}"; do
			wait "${pp%%:*}" || fail "kcat -P to partition ${pp#*:}: $(cat "$tmp/kafka/produce.${pp#*:}.err")"
		done
		pids=()
	fi
done
echo "produced with kcat -P in $(secs $(($(now_ms) - t0))) s"

# Still all there? Per partition, the log start must be 0 and the end what was produced.
lo_args=() hi_args=()
for ((p = 0; p < partitions; p++)); do lo_args+=(-t "bench:$p:-2"); hi_args+=(-t "bench:$p:-1"); done
kcat -Q -b "$bootstrap" "${lo_args[@]}" >"$tmp/kafka/low" 2>"$tmp/kafka/q.err" ||
	fail "kcat -Q: $(cat "$tmp/kafka/q.err")"
kcat -Q -b "$bootstrap" "${hi_args[@]}" >"$tmp/kafka/high" 2>"$tmp/kafka/q.err" ||
	fail "kcat -Q: $(cat "$tmp/kafka/q.err")"
for ((p = 0; p < partitions; p++)); do wc -l <"$tmp/kafka/part.$p"; done >"$tmp/kafka/produced"
check="$(awk '
	FILENAME ~ /produced$/ { want[FNR - 1] = $1; parts++; next }
	FILENAME ~ /low$/ { gsub(/[][]/, "", $2); low[$2] = $4; next }
	{ gsub(/[][]/, "", $2); high[$2] = $4 }
	END {
		for (p = 0; p < parts; p++) {
			if (!(p in low) || !(p in high)) { print "partition " p ": no watermarks"; exit }
			if (low[p] != 0) {
				printf "partition %d: the log starts at offset %d, the broker dropped the oldest %d of %d messages", p, low[p], low[p], want[p]
				exit
			}
			if (high[p] != want[p]) { printf "partition %d: %d messages produced, %d on the broker", p, want[p], high[p]; exit }
			total += high[p]
		}
		print "ok " total
	}' "$tmp/kafka/produced" "$tmp/kafka/low" "$tmp/kafka/high")"
case "$check" in
"ok $n") echo "the broker holds all $n messages (log start 0 in every partition)" ;;
*) fail "the broker does not hold all $n messages ($check): the librdkafka mock keeps about" \
	"5 MiB per partition, so lower N or raise PARTITIONS" ;;
esac
rm -f "$tmp"/kafka/part.*

# The CPU time, in ms, the stream's workers have used so far: "process thread", the whole
# process (librdkafka's threads included) and its PostgreSQL thread alone.
workers_cpu_ms() {	# stream
	local p proc=0 thread=0
	for p in $(sql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: $1'
	                   OR application_name LIKE 'tributary: $1 #%'"); do
		proc=$((proc + $(cpu_ms "/proc/$p/stat")))
		thread=$((thread + $(cpu_ms "/proc/$p/task/$p/stat")))
	done
	echo "$proc $thread"
}

# VmRSS counts the shared buffers the worker has touched (RssShmem), which grows towards
# the table's size in shared_buffers however the worker behaves; RssAnon is its own memory.

# Once the stream's rows flow: perf record -a -g (the whole box: on 2 CPUs the worker shares
# them with its own librdkafka threads, the broker and the server's other processes) for
# PERF_SECONDS. Midway it notes which thread ids play which part, in perf.roles.
profile_worker() {	# stream
	local pid i perf_pid postmaster p t
	pid="$(worker_pid "$1" 60)" || return 0
	for ((i = 0; i < 300; i++)); do
		[ "$(sql -c "SELECT coalesce(sum(rows), 0) FROM tributary.stream_stats
		             WHERE stream = '$1' AND partition IS NULL")" -gt 0 ] && break
		sleep 0.2
	done
	perf record -a -g -o "$tmp/perf.data" -- sleep "$perf_seconds" >"$tmp/perf.log" 2>&1 &
	perf_pid=$!
	if [ "${PERF_OFFCPU:-0}" = 1 ]; then
		# where the worker's PostgreSQL thread waits: its switches off the CPU, with stacks
		perf record -e sched:sched_switch -g -t "$pid" -o "$tmp/offcpu.data" -- sleep "$perf_seconds" \
			>"$tmp/offcpu.log" 2>&1 &
	fi
	sleep 0.5
	postmaster="$(head -n 1 "$TRIB_PGDATA/postmaster.pid")"
	{
		echo "0 idle"
		echo "$pid worker"
		for t in /proc/"$pid"/task/*; do [ "${t##*/}" = "$pid" ] || echo "${t##*/} rdkafka"; done
		for t in /proc/"$broker_pid"/task/*; do echo "${t##*/} broker"; done
		for p in $postmaster $(ps -o pid= --ppid "$postmaster"); do
			[ "$p" = "$pid" ] && continue
			for t in /proc/"$p"/task/*; do echo "${t##*/} server"; done
		done
	} >"$tmp/perf.roles" 2>/dev/null || true
	wait "$perf_pid" || true
}

kafka_options() {	# topic, group[, extra options such as "partitions": [...],]
	if [ "${DEFAULTS:-0}" = 1 ]; then
		printf '{"brokers": "%s", "topic": "%s", %s"format": "json"}' "$bootstrap" "$1" "${3:-}"
		return
	fi
	printf '{"brokers": "%s", "topic": "%s", "group": "%s", %s"format": "json", "batch_size": %d, "librdkafka": %s}' \
		"$bootstrap" "$1" "$2" "${3:-}" "$batch" "$rdkafka"
}
all_partitions="$(seq -s ', ' 0 $((partitions - 1)))"

# One tributary run on a fresh stream; sets run_ms, join_ms and rss_line. With "static" the
# stream names all partitions ("partitions": [0, ...]) and is assigned them directly, as kcat
# -C is, instead of joining a consumer group; "parallel" adds "parallelism" (the memory
# samples are then of worker #1 only).
tributary_run() {	# run label, group|static|parallel, "profile" to run perf alongside
	local stream="bench_$1" t0 out first_ms last_ms rss_file="$tmp/rss.$1" extra=""
	case "$2" in
	static) extra="\"partitions\": [$all_partitions], " ;;
	parallel) extra="\"partitions\": [$all_partitions], \"parallelism\": $parallel, " ;;
	esac
	fresh t
	: >"$rss_file"
	if [ "${3:-}" = profile ]; then profile_worker "$stream" & else sample_rss "$stream" "$rss_file" & fi
	helper_pid=$!
	t0="$(now_ms)"
	if ! out="$(sql <<SQL
SELECT tributary.create_stream('$stream', 't', 'kafka', '$(kafka_options bench "tributary-bench-$$-$1" "$extra")',
                               key => 'id', event_time => 'at', enabled => ${QUALITY:-0} = 0);
SELECT tributary.set_quality('$stream', '1 minute', allowed_lateness => '${LATENESS:-0}'${QUALITY_COLUMNS:+, columns => '$QUALITY_COLUMNS'})
WHERE ${QUALITY:-0} = 1;
SELECT tributary.start('$stream') WHERE ${QUALITY:-0} = 1;
SELECT first_ms, done_ms FROM bench_wait('$stream', 't', $n, '$poll', $timeout_s);
SQL
)"; then
		sql -c "SELECT name, state, worker_pid, last_error FROM tributary.streams" >&2 || true
		fail "tributary run $1 did not complete"
	fi
	IFS='|' read -r first_ms last_ms <<<"$(tail -n 1 <<<"$out")"
	read -r cpu_proc_ms cpu_thread_ms <<<"$(workers_cpu_ms "$stream")"
	run_ms=$((last_ms - t0))
	join_ms=$((first_ms - t0))
	# perf ends by itself; the sampler would run until the worker exits
	[ "${3:-}" = profile ] || kill "$helper_pid" 2>/dev/null || true
	wait "$helper_pid" 2>/dev/null || true
	helper_pid=""
	out="$(sql -c "SELECT count(*), count(DISTINCT id) FROM t" \
		-c "SELECT count(*) FROM tributary.dead_letters WHERE stream = '$stream'")"
	[ "$out" = "$n|$n"$'\n'"0" ] ||
		fail "tributary run $1 stored (rows|distinct ids, dead letters) $(tr '\n' ' ' <<<"$out"), expected $n|$n 0"
	if [ "${QUALITY:-0}" = 1 ]; then
		IFS='|' read -r qw qa ql <<<"$(sql -c "SELECT count(*), coalesce(sum(revision), 0),
		                                          coalesce(sum(late_rows), 0)
		                                   FROM tributary.quality_windows WHERE stream = '$stream'")"
		echo "  quality: $qw windows closed, $qa amendments of closed windows, $ql late rows"
	fi
	drop_stream "$stream"
	rss_line="$(rss_summary "$rss_file")"
}

best_copy="" best_kcat=""
declare -A best_trib=() best_join=() best_rss=() best_cpu=()
# Others' work on the box skews every number: say how busy it was.
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
# One more COPY, untimed, for the backend's CPU time: its pid first, then COPY, then a
# pause to read /proc/<pid>/stat before the backend exits.
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
echo "== kcat_psql: kcat -C | psql COPY t_jsonb(doc) FROM STDIN"
for r in $(seq "$runs"); do
	fresh t_jsonb
	t0="$(now_ms)"
	kcat -C -b "$bootstrap" -t bench -o beginning -e -q -f '%s\n' 2>"$tmp/kafka/kcat.err" |
		sql -c "COPY t_jsonb(doc) FROM STDIN" >/dev/null ||
		fail "the kcat | psql pipeline failed: $(cat "$tmp/kafka/kcat.err")"
	ms=$(($(now_ms) - t0))
	[ "$(sql -c 'SELECT count(*) FROM t_jsonb')" = "$n" ] || fail "kcat_psql did not store $n rows"
	echo "  run $r: $(secs "$ms") s, $(rate "$n" "$ms") rows/s"
	if [ -z "$best_kcat" ] || [ "$ms" -lt "$best_kcat" ]; then best_kcat="$ms"; fi
done
fresh t_jsonb

for mode in group static parallel; do
	echo
	case "$mode" in
	group) if [ "${DEFAULTS:-0}" = 1 ]; then echo "== tributary: a kafka stream per run, consumer group, only brokers, topic and format (tributary's defaults), POLL=$poll"; else echo "== tributary: a kafka stream per run, consumer group (batch_size $batch, librdkafka $rdkafka, POLL=$poll)"; fi ;;
	static) echo "== tributary_static: the same with \"partitions\": [0 .. $((partitions - 1))], no consumer group" ;;
	parallel) echo "== tributary_parallel: tributary_static with \"parallelism\": $parallel" ;;
	esac
	for r in $(seq "$runs"); do
		tributary_run "$mode$r" "$mode"
		echo "  run $r: $(secs "$run_ms") s, $(rate "$n" "$run_ms") rows/s; first rows after" \
			"$(secs "$join_ms") s, then $(rate "$n" $((run_ms - join_ms))) rows/s;" \
			"$n rows, $n distinct ids, 0 dead letters"
		echo "         worker memory: $rss_line"
		if [ -z "${best_trib[$mode]:-}" ] || [ "$run_ms" -lt "${best_trib[$mode]}" ]; then
			best_trib[$mode]="$run_ms" best_join[$mode]="$join_ms" best_rss[$mode]="$rss_line"
			best_cpu[$mode]="$cpu_proc_ms $cpu_thread_ms"
		fi
	done
done

if [ "${PERF:-0}" = 1 ]; then
	echo
	echo "== perf: one more tributary run (not counted), perf record -a -g for $perf_seconds s once rows flow"
	tributary_run perf "${PERF_MODE:-group}" profile
	echo "  (that run: $(secs "$run_ms") s, first rows after $(secs "$join_ms") s)"
	if [ -s "$tmp/perf.data" ] && [ -s "$tmp/perf.roles" ]; then
		# Filtered by thread, perf merges entries across threads unless pid is a sort key:
		# keep it, then show only the thread's name.
		report() { perf report -i "$tmp/perf.data" --no-children -g none --stdio "$@" 2>/dev/null |
			grep '%' | grep -v '^#' | sed -E 's/^( *[0-9.]+%) +[0-9]+:([^ ]+)/\1  \2/' || true; }
		# cpu-clock periods are nanoseconds: per part, the CPU time it had in the window.
		echo "  where the CPU time went in those $perf_seconds s (of $((perf_seconds * $(nproc))) CPU-s), by thread:"
		perf report -i "$tmp/perf.data" --no-children -g none --stdio -F period,pid 2>/dev/null |
			grep -v '^#' | awk '
			FILENAME == ARGV[1] { role[$1] = $2; next }
			NF >= 2 && $1 ~ /^[0-9]+$/ {
				split($2, t, ":"); r = (t[1] in role) ? role[t[1]] : "other"; sum[r] += $1 / 1e9; all += $1 / 1e9
			}
			END {
				split("worker rdkafka broker server other idle", order, " ")
				name["worker"] = "worker, PostgreSQL thread (batches, JSON, COPY, WAL)"
				name["rdkafka"] = "worker, librdkafka threads (fetch, queue)"
				name["broker"] = "tributary-kafka-mock (the broker)"
				name["server"] = "the server'"'"'s other processes (WAL writer, poller, ...)"
				name["other"] = "other processes on the box"
				name["idle"] = "idle"
				for (i = 1; i <= 6; i++) printf "    %5.2f CPU-s  %s\n", sum[order[i]], name[order[i]]
				printf "    %5.2f CPU-s  sampled in all\n", all
			}' "$tmp/perf.roles" -
		wpid="$(awk '$2 == "worker" { print $1 }' "$tmp/perf.roles")"
		rtids="$(awk '$2 == "rdkafka" { printf "%s%s", sep, $1; sep = "," }' "$tmp/perf.roles")"
		echo "  the worker's PostgreSQL thread, top symbols by self time (% of that thread):"
		report -F overhead,pid,dso,sym --tid "$wpid" --percentage relative --percent-limit 0.8 |
			head -n 30 | sed 's/^/  /'
		if [ -n "$rtids" ]; then
			echo "  the worker's librdkafka threads, top symbols by self time (% of those threads):"
			report -F overhead,pid,dso,sym --tid "$rtids" --percentage relative --percent-limit 2 |
				head -n 15 | sed 's/^/  /'
		fi
		echo "  the broker, top symbols by self time (% of the broker):"
		report -F overhead,pid,dso,sym --pid "$broker_pid" --percentage relative --percent-limit 3 |
			head -n 10 | sed 's/^/  /'
		if [ -s "$tmp/offcpu.data" ]; then
			echo "  where the worker's PostgreSQL thread left the CPU (share of its switches, by caller chain):"
			perf report -i "$tmp/offcpu.data" --no-children --stdio -g caller,0.5,callee,function,percent \
				--percent-limit 5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 60 | sed 's/^/  /'
		fi
	else
		echo "  perf recorded nothing: $(cat "$tmp/perf.log" 2>/dev/null)"
	fi
fi

echo
echo "== a message with a backslash escape, on topic escape"
escaped='{"id":1,"name":"say \"hi\"","at":"2026-11-23T00:00:00.000Z","value":1.5,"tag":"back\\slash"}'
printf '%s\n' "$escaped" | kcat -P -b "$bootstrap" -t escape -p 0 2>"$tmp/kafka/kcat.err" ||
	fail "kcat -P to escape: $(cat "$tmp/kafka/kcat.err")"
echo "  message: $escaped"
sql -c "CREATE TABLE t_escape (LIKE t)" -c "CREATE TABLE t_escape_jsonb (doc jsonb)"
if kcat -C -b "$bootstrap" -t escape -o beginning -e -q -f '%s\n' 2>"$tmp/kafka/kcat.err" |
	sql -c "COPY t_escape_jsonb(doc) FROM STDIN" >/dev/null 2>"$tmp/pipe.err"; then
	echo "  kcat_psql: stored $(sql -c 'SELECT count(*) FROM t_escape_jsonb') row(s): $(sql -c 'SELECT doc FROM t_escape_jsonb')"
else
	echo "  kcat_psql: the COPY aborted, nothing stored: $(grep -m 1 ERROR "$tmp/pipe.err")"
	echo "             ($(grep -m 1 CONTEXT "$tmp/pipe.err" | sed 's/^[^:]*: *//'))"
fi
sql -c "SELECT tributary.create_stream('escape', 't_escape', 'kafka', '$(kafka_options escape "tributary-escape-$$")')" \
	-c "SELECT 1 FROM bench_wait('escape', 't_escape', 1, 'count', 60)" >/dev/null ||
	fail "tributary did not store the escaped message"
echo "  tributary: stored it: $(sql -F ' | ' -c 'SELECT id, name, tag FROM t_escape')"
drop_stream escape

echo
echo "== results: $n messages, $partitions partitions, best of $runs runs each, on $(nproc) CPUs" \
	"(load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-44s %9s %11s %10s\n' contender seconds rows/s "% of COPY"
row() { printf '%-44s %9s %11s %10s\n' "$1" "$(secs "$2")" "$(rate "$n" "$2")" "$(pct "$2")"; }
row "copy_csv (COPY t FROM csv file)" "$best_copy"
row "tributary (create_stream .. N rows)" "${best_trib[group]}"
row "  after its first rows" $((best_trib[group] - best_join[group]))
row "tributary_static (create_stream .. N rows)" "${best_trib[static]}"
row "  after its first rows" $((best_trib[static] - best_join[static]))
row "tributary_parallel (create_stream .. N rows)" "${best_trib[parallel]}"
row "  after its first rows" $((best_trib[parallel] - best_join[parallel]))
row "kcat_psql (kcat -C | psql COPY jsonb)" "$best_kcat"
for mode in group static parallel; do
	name="tributary"
	[ "$mode" = group ] || name="tributary_$mode"
	awk -v name="$name" -v c="$best_copy" -v t="${best_trib[$mode]}" -v k="$best_kcat" \
		-v j="${best_join[$mode]}" 'BEGIN {
		printf "%s: first rows after %.2f s; %.2fx kcat_psql (after its first rows %.2fx)\n", name, j / 1000, k / t, k / (t - j)
		printf "  target >= 90 %% of raw COPY after the first rows: %s (%d %%)\n", (c / (t - j) >= 0.9 ? "met" : "missed"), 100 * c / (t - j)
		printf "  target >= 3x kcat_psql after the first rows:      %s (%.2fx)\n", (k / (t - j) >= 3 ? "met" : "missed"), k / (t - j)
	}'
	read -r cp ct <<<"${best_cpu[$mode]}"
	awk -v n="$n" -v cp="$cp" -v ct="$ct" -v cc="$best_copy_cpu" 'BEGIN {
		printf "  CPU per row (best run): %.2f us, its PostgreSQL thread %.2f us; COPY'"'"'s backend %.2f us (%.2fx)\n",
			1000 * cp / n, 1000 * ct / n, 1000 * cc / n, (cc > 0 ? ct / cc : 0)
	}'
	echo "  worker memory (best run): ${best_rss[$mode]}"
done
