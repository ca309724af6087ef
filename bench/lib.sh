# bench/lib.sh: what bench/kafka_ingest.sh and bench/redis_ingest.sh share, sourced after
# test/lib/cluster.sh. The functions use the sourcing script's globals when called: sql
# (psql on the cluster), tmp, fail, and for pct best_copy.
# shellcheck shell=bash

now_ms() { date +%s%3N; }
# rows/s and seconds from rows and milliseconds
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%d", n * 1000 / (ms > 0 ? ms : 1) }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
# milliseconds as a share of the best raw COPY (best_copy: the sourcing script's)
# shellcheck disable=SC2154
pct() { awk -v c="$best_copy" -v ms="$1" 'BEGIN { printf "%d %%", 100 * c / (ms > 0 ? ms : 1) }'; }

# The SQL of bench_wait(stream, tbl, n, poll, timeout_s): wait until the stream has
# committed n rows into tbl, at most timeout_s seconds, polling every 0.2 s, and return when
# the first rows and all n were seen (ms since the epoch). poll 'stats' reads the stream's
# committed row counter (its row of stream_stats, topic NULL) and counts tbl once at the end;
# 'count' runs count(*) on tbl each time, which on a 2-core box takes CPU from the worker
# being timed. A volatile function: each query takes a new snapshot, so commits show up as
# they happen.
bench_wait_sql() {
	cat <<'SQL'
CREATE FUNCTION bench_wait(stream text, tbl regclass, n bigint, poll text, timeout_s int,
                           OUT first_ms bigint, OUT done_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout_s * interval '1 second';
    seen bigint;
BEGIN
    LOOP
        IF poll = 'count' THEN
            EXECUTE format('SELECT count(*) FROM %s', tbl) INTO seen;
        ELSE
            SELECT s.rows INTO seen FROM tributary.stream_stats s
            WHERE s.stream = bench_wait.stream AND s.topic IS NULL;
            IF seen >= n THEN
                EXECUTE format('SELECT count(*) FROM %s', tbl) INTO seen;
            END IF;
        END IF;
        IF seen > 0 AND first_ms IS NULL THEN
            first_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
        END IF;
        IF seen >= n THEN
            done_ms := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
            RETURN;
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'stream % stored % of % rows in % s', stream, coalesce(seen, 0), n, timeout_s;
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;
SQL
}

fresh() {	# an empty, checkpointed table
	sql -c "TRUNCATE $1" -c "CHECKPOINT" >/dev/null
}

clk_tck="$(getconf CLK_TCK)"
cpu_ms() {	# /proc/<pid>[/task/<tid>]/stat: user + system CPU time so far, in ms
	awk -v hz="$clk_tck" '{ printf "%d", ($14 + $15) * 1000 / hz }' "$1" 2>/dev/null || echo 0
}
worker_pid() {	# stream, seconds: the pid of the stream's (first) worker once it runs
	local pid="" i
	for ((i = 0; i < $2 * 5; i++)); do
		pid="$(sql -c "SELECT pid FROM pg_stat_activity
		               WHERE application_name IN ('tributary: $1', 'tributary: $1 #1') LIMIT 1")"
		if [ -n "$pid" ]; then
			echo "$pid"
			return 0
		fi
		sleep 0.2
	done
	return 1
}
# Every second until the worker exits or the sampler is stopped: "VmRSS RssAnon" in kB.
sample_rss() {	# stream, file
	local pid
	pid="$(worker_pid "$1" 60)" || return 0
	while [ -r "/proc/$pid/status" ]; do
		awk '$1 == "VmRSS:" { r = $2 } $1 == "RssAnon:" { a = $2 } END { if (r != "") print r, a }' \
			"/proc/$pid/status" >>"$2" 2>/dev/null || break
		sleep 1
	done
}
# sample_rss's samples as one line: ranges, and RssAnon each second
rss_summary() {	# file
	awk '
		NR == 1 { rmin = rmax = $1; amin = amax = $2 }
		{ if ($1 < rmin) rmin = $1; if ($1 > rmax) rmax = $1; if ($2 < amin) amin = $2; if ($2 > amax) amax = $2
		  series = series sprintf(" %d", $2 / 1024) }
		END { if (NR) printf "VmRSS %d..%d MiB, RssAnon %d..%d MiB (%d samples; RssAnon each second:%s)",
		                     rmin / 1024, rmax / 1024, amin / 1024, amax / 1024, NR, series
		      else printf "no samples" }' "$1"
}
drop_stream() {	# stream: drop it and wait (at most 30 s) for its workers to exit
	local i
	sql -c "SELECT tributary.drop_stream('$1')" >/dev/null
	for ((i = 0; i < 150; i++)); do
		[ -z "$(sql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'tributary: $1'
		                OR application_name LIKE 'tributary: $1 #%'")" ] &&
			return 0
		sleep 0.2
	done
	fail "the worker of dropped stream $1 did not exit within 30 s"
}
