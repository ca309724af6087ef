#!/usr/bin/env bash
#
# test/run.sh: tributary's one test harness (`make test`, called by .ci/run).
#
# Bootstraps the machine (tools/bootstrap.sh), builds and installs the extension, its
# listener client tributary-listen (into the PostgreSQL bindir, first on the tests' PATH) and the
# test modules (test/modules/*: libraries integration tests preload after tributary), copies
# sql/ expected/ test/ into a private temp dir owned by the PostgreSQL OS user (the clone
# may live where that user cannot read, e.g. /root), then runs three suites:
#
#   regress      pg_regress over the Makefile's REGRESS list (sql/NAME.sql vs
#                expected/NAME.out) in database contrib_regression of a throwaway cluster
#                (test/lib/cluster.sh) that preloads tributary with
#                tributary.database = 'contrib_regression'.
#   pgtap        pg_prove over test/pgtap/*.sql in database tributary_tap of that same
#                cluster (the harness creates the pgtap extension there; tests create
#                tributary themselves).
#   integration  prove over test/integration/*.pl with PostgreSQL's Perl TAP framework
#                (PostgreSQL::Test::Cluster) and test/integration/TributaryTest.pm; each
#                test makes its own nodes (the harness cluster is stopped by then).
#
# Output ends with one line per suite and then, as the very last line, exactly
# "N passed, N failed", counting test files (a pg_regress test, a pgTAP file, a .pl file).
# Files that never ran (build failure, interruption, a suite that crashed) count as failed.
# Exit status is non-zero when anything failed.
#
# Environment:
#   TESTS_ONLY=regress|pgtap|integration   run only these suites (comma-separated list ok)
#   PROVE_TESTS="test/integration/010_x.pl ..."
#                                   run only these integration files (paths or basenames);
#                                   implies TESTS_ONLY=integration unless TESTS_ONLY is set
#   PROVE_FLAGS="-v"                extra flags for prove (integration suite)
#   PG_TEST_TIMEOUT_DEFAULT=120     PostgreSQL::Test timeout, seconds (default 120 here)
#   TEST_EXTRA_CONF="a = 1\nb = 2"  postgresql.conf lines appended to the harness
#                                   cluster (regress, pgtap), e.g. "log_min_messages = debug1"
#   KEEP_TMP=1                      keep the temp dir (logs, data dirs) and print its path
#   PG_CONFIG=/path/to/pg_config    which PostgreSQL to build against and test with
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# One ordered stream: test output, diagnostics and the final summary line all on stdout.
exec 2>&1

# shellcheck source-path=SCRIPTDIR source=lib/cluster.sh disable=SC1091
source "$repo/test/lib/cluster.sh"

PG_CONFIG="${PG_CONFIG:-pg_config}"
export PG_CONFIG

# ---------------------------------------------------------------------------------------
# Which suites and which files.

all_suites=(regress pgtap integration)
only="${TESTS_ONLY:-}"
if [ -z "$only" ] && [ -n "${PROVE_TESTS:-}" ]; then
	only=integration
fi
suites=()
if [ -z "$only" ]; then
	suites=("${all_suites[@]}")
else
	IFS=', ' read -r -a requested <<<"$only"
	for s in "${requested[@]}"; do
		case "$s" in
		regress | pgtap | integration) suites+=("$s") ;;
		*)
			echo "run.sh: TESTS_ONLY='$only': unknown suite '$s' (regress, pgtap, integration)" >&2
			exit 2
			;;
		esac
	done
fi

want() {
	local s
	for s in "${suites[@]}"; do
		[ "$s" = "$1" ] && return 0
	done
	return 1
}

# Print a make variable as the Makefile (including PGXS) defines it. Falls back to a plain
# grep when make cannot parse the Makefile (e.g. before bootstrap installed pg_config).
make_var() {
	local out
	# shellcheck disable=SC2016 # $($*) is make syntax, not shell
	if out="$(printf 'trib-print-%%:\n\t@echo $($*)\n' |
		make -s --no-print-directory -f Makefile -f - "trib-print-$1" 2>/dev/null)"; then
		echo "$out"
	else
		sed -n "s/^$1[[:space:]]*[:?]*=[[:space:]]*//p" Makefile | tail -n 1
	fi
}

# Planned files per suite (names are relative to the repo / the temp copy).
plan_regress=()
plan_pgtap=()
plan_integration=()
plan_suites() {
	local f name
	if want regress; then
		read -r -a plan_regress <<<"$(make_var REGRESS)"
	fi
	if want pgtap; then
		for f in test/pgtap/*.sql; do
			if [ -e "$f" ]; then
				plan_pgtap+=("$f")
			fi
		done
	fi
	if want integration; then
		if [ -n "${PROVE_TESTS:-}" ]; then
			for f in $PROVE_TESTS; do
				name="$(basename "$f")"
				plan_integration+=("test/integration/$name")
			done
		else
			for f in test/integration/*.pl; do
				if [ -e "$f" ]; then
					plan_integration+=("$f")
				fi
			done
		fi
	fi
}

# ---------------------------------------------------------------------------------------
# Results, reporting and cleanup. The EXIT trap always prints the summary, so every way
# out (success, failure, set -e, Ctrl-C) ends with the "N passed, N failed" line.

declare -A passed=() failed_names=() note=()
tmp=""
bindir=""

# Record one file's result: record SUITE NAME ok|fail
record() {
	if [ "$3" = ok ]; then
		passed[$1]=$((${passed[$1]:-0} + 1))
	else
		failed_names[$1]="${failed_names[$1]:-}${failed_names[$1]:+ }$2"
	fi
}

# shellcheck disable=SC2317 # functions below run from the EXIT trap
planned_count() {
	local -n arr="plan_$1"
	echo "${#arr[@]}"
}

# shellcheck disable=SC2317
cleanup() {
	[ -n "$tmp" ] && [ -d "$tmp" ] || return 0
	trib_cluster_stop "$tmp/cluster"
	# Nodes an interrupted integration test left running: stop them before removing
	# their data directories.
	local pidfile
	while IFS= read -r pidfile; do
		(cd "$tmp" && trib_as_user pg_ctl -D "$(dirname "$pidfile")" -m immediate -w stop) \
			>/dev/null 2>&1 || true
	done < <(find "$tmp" -name postmaster.pid -print 2>/dev/null)
	# redis-servers an interrupted Redis test left running (TributaryRedis.pm starts each with
	# --pidfile DIR/redis.pid under $tmp; a server that exited cleanly removed its file, and a
	# pid is only signalled while it still is a redis-server).
	local pid
	while IFS= read -r pidfile; do
		pid="$(cat "$pidfile" 2>/dev/null || true)"
		if [[ "$pid" =~ ^[0-9]+$ ]] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
		fi
	done < <(find "$tmp" -name redis.pid -print 2>/dev/null)
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "run.sh: KEEP_TMP=1: kept $tmp (cluster log: $tmp/cluster/log," \
			"pg_regress: $tmp/results, integration: $tmp/tmp_check/log)"
	else
		rm -rf "$tmp"
	fi
}

# shellcheck disable=SC2317
on_exit() {
	local rc=$? s n p f total_p=0 total_f=0 line
	trap - EXIT INT TERM
	set +e
	cleanup
	echo
	echo "==== summary"
	for s in "${suites[@]}"; do
		n="$(planned_count "$s")"
		p="${passed[$s]:-0}"
		# Stopped before this suite reported anything (set -e, signal): say so.
		if [ "$rc" -ne 0 ] && [ -z "${note[$s]:-}" ] && [ "$p" -eq 0 ] &&
			[ -z "${failed_names[$s]:-}" ] && [ "$n" -gt 0 ]; then
			note[$s]="did not finish: harness stopped with status $rc"
		fi
		f=$((n - p))
		total_p=$((total_p + p))
		total_f=$((total_f + f))
		line="$(printf '%-12s %d passed, %d failed' "$s:" "$p" "$f")"
		if [ "$f" -gt 0 ] && [ -n "${failed_names[$s]:-}" ]; then
			line+=" (failed: ${failed_names[$s]})"
		fi
		if [ -n "${note[$s]:-}" ]; then
			line+=" [${note[$s]}]"
		fi
		echo "$line"
	done
	if [ "$total_f" -gt 0 ] && [ "$rc" -eq 0 ]; then
		rc=1
	fi
	echo "$total_p passed, $total_f failed"
	exit "$rc"
}

trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Mark every selected suite that has not run yet with a reason (shown in the summary).
not_run() {
	local s
	for s in "${suites[@]}"; do
		[ -n "${note[$s]:-}" ] || note[$s]="not run: $1"
	done
}

step() {
	echo "==== $*"
}

# ---------------------------------------------------------------------------------------
# Setup: bootstrap, build, install, temp copy.

step "bootstrap"
if ! bash tools/bootstrap.sh; then
	plan_suites
	not_run "bootstrap failed"
	exit 1
fi
plan_suites

# Libraries the integration tests can preload after tributary (TributaryTest.pm's
# test_stage option); built against src/ and installed next to tributary.
test_modules=(test/modules/tributary_test_stage)

step "build"
if ! make -s || ! make -s tools; then
	not_run "build failed"
	exit 1
fi
for m in "${test_modules[@]}"; do
	if ! make -s -C "$m" PG_CONFIG="$PG_CONFIG"; then
		not_run "build of $m failed"
		exit 1
	fi
done
# sudo only when needed: not root and the PostgreSQL install dirs are not writable.
sudo=""
if [ "$(id -u)" -ne 0 ] && ! { [ -w "$("$PG_CONFIG" --pkglibdir)" ] &&
	[ -w "$("$PG_CONFIG" --sharedir)/extension" ] && [ -w "$("$PG_CONFIG" --bindir)" ]; }; then
	sudo="sudo"
fi
if ! $sudo make -s install PG_CONFIG="$PG_CONFIG"; then
	not_run "make install failed"
	exit 1
fi
for m in "${test_modules[@]}"; do
	if ! $sudo make -s -C "$m" install PG_CONFIG="$PG_CONFIG"; then
		not_run "make install of $m failed"
		exit 1
	fi
done

bindir="$(trib_pg_bindir)"
pgxs_dir="$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")"
pg_regress="$pgxs_dir/src/test/regress/pg_regress"
os_user="$(trib_os_user)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-test.XXXXXX")"
for d in sql expected test input output data; do
	if [ -d "$d" ]; then
		cp -R "$d" "$tmp/"
	fi
done
mkdir -p "$tmp/sql" "$tmp/expected" "$tmp/results" "$tmp/test/integration" "$tmp/test/pgtap" \
	"$tmp/tmp" "$tmp/tools"
# the local Kafka broker, where TributaryKafka.pm looks for it (../../tools from test/integration)
cp tools/tributary-kafka-mock "$tmp/tools/"
rm -rf "$tmp/test/results" "$tmp/test/tmp_check" "$tmp/test/integration/tmp_check"
if [ "$(id -u)" -eq 0 ]; then
	chown -R "$os_user:" "$tmp"
fi
echo "run.sh: temp dir $tmp, server OS user $os_user"

# The harness cluster, started once for regress and pgtap (tried once: 1 up, 2 failed).
cluster_up=0
ensure_cluster() {
	[ "$cluster_up" = 1 ] && return 0
	[ "$cluster_up" = 2 ] && return 1
	cluster_up=2
	step "start cluster in $tmp/cluster"
	local extra=()
	if [ -n "${TEST_EXTRA_CONF:-}" ]; then
		mapfile -t extra < <(printf '%b\n' "$TEST_EXTRA_CONF")
	fi
	trib_cluster_start "$tmp/cluster" "${extra[@]}" || return 1
	cluster_up=1
}

# ---------------------------------------------------------------------------------------
# Suites. Each records per-file results; a file with no result counts as failed.

run_regress() {
	local name rc=0 out="$tmp/results/pg_regress.out"
	step "regress: ${plan_regress[*]}"
	if [ ${#plan_regress[@]} -eq 0 ]; then
		note[regress]="REGRESS is empty"
		return 0
	fi
	if ! ensure_cluster; then
		note[regress]="not run: cluster did not start"
		return 1
	fi
	# cluster.sh created contrib_regression (it is tributary.database) unless
	# TEST_EXTRA_CONF points the launcher elsewhere.
	if [ -z "$("$bindir/psql" -XAtc "SELECT 1 FROM pg_database WHERE datname = 'contrib_regression'")" ] &&
		! "$bindir/createdb" contrib_regression; then
		note[regress]="not run: createdb failed"
		return 1
	fi
	for name in "${plan_regress[@]}"; do
		[ -f "$tmp/sql/$name.sql" ] || echo "run.sh: regress: sql/$name.sql does not exist" >&2
		[ -f "$tmp/expected/$name.out" ] || echo "run.sh: regress: expected/$name.out does not exist" >&2
	done
	(cd "$tmp" && trib_as_user "$pg_regress" --use-existing --bindir="$bindir" \
		--host="$PGHOST" --port="$PGPORT" --inputdir="$tmp" --outputdir="$tmp/results" \
		--dbname=contrib_regression "${plan_regress[@]}") 2>&1 | tee "$out" || rc=$?
	for name in "${plan_regress[@]}"; do
		# pg_regress prints "test NAME ... ok  12 ms" (or "FAILED", "failed (ignored)").
		if [ "$rc" -eq 0 ] ||
			grep -Eq "^[[:space:]]*(test[[:space:]]+)?${name}[[:space:]]+\.\.\.[[:space:]]+ok([[:space:]]|$)" "$out"; then
			record regress "$name" ok
		else
			record regress "$name" fail
		fi
	done
	if [ "$rc" -ne 0 ] && [ -s "$tmp/results/regression.diffs" ]; then
		echo "---- $tmp/results/regression.diffs"
		cat "$tmp/results/regression.diffs"
		echo "---- end of regression.diffs"
	fi
	return "$rc"
}

# Drop the per-invocation trailer of prove/pg_prove (we run one file per invocation and
# print our own summary); keep everything else, including the failure report. The
# pipeline's status stays prove's (pipefail, and sed exits 0).
quiet_tap() {
	sed -u -E '/^(All tests successful\.|Files=[0-9]+, Tests=[0-9]+, |Result: (PASS|FAIL)$)/d'
}

run_pgtap() {
	local f rc=0
	step "pgtap: ${plan_pgtap[*]:-}"
	if [ ${#plan_pgtap[@]} -eq 0 ]; then
		note[pgtap]="no test/pgtap/*.sql files, skipped"
		echo "run.sh: pgtap: no test/pgtap/*.sql files yet, skipping"
		return 0
	fi
	if ! ensure_cluster; then
		note[pgtap]="not run: cluster did not start"
		return 1
	fi
	if ! "$bindir/createdb" tributary_tap ||
		! "$bindir/psql" -XAtq -v ON_ERROR_STOP=1 -d tributary_tap -c 'CREATE EXTENSION pgtap'; then
		note[pgtap]="not run: could not create database tributary_tap with pgtap"
		return 1
	fi
	for f in "${plan_pgtap[@]}"; do
		if (cd "$tmp" && trib_as_user pg_prove --timer --ext .sql -h "$PGHOST" -p "$PGPORT" \
			-U "$PGUSER" -d tributary_tap "$f") 2>&1 | quiet_tap; then
			record pgtap "$f" ok
		else
			record pgtap "$f" fail
			rc=1
		fi
	done
	return "$rc"
}

# Print the logs of a failed integration test (PostgreSQL::Test::Utils writes
# tmp_check/log/regress_log_NAME; each node logs to tmp_check/log/NAME_NODE.log).
show_integration_logs() {
	local name="$1" log
	for log in "$tmp/tmp_check/log/regress_log_$name" "$tmp/tmp_check/log/${name}"_*.log; do
		[ -f "$log" ] || continue
		echo "---- last 60 lines of $log"
		tail -n 60 "$log"
	done
	echo "---- end of logs for $name"
}

run_integration() {
	local f name rc=0 perl5lib flags=()
	step "integration: ${plan_integration[*]:-}"
	if [ ${#plan_integration[@]} -eq 0 ]; then
		note[integration]="no test/integration/*.pl files, skipped"
		return 0
	fi
	if [ -n "${PROVE_FLAGS:-}" ]; then
		read -r -a flags <<<"$PROVE_FLAGS"
	fi
	perl5lib="$pgxs_dir/src/test/perl:$tmp/test/integration${PERL5LIB:+:$PERL5LIB}"
	for f in "${plan_integration[@]}"; do
		name="$(basename "$f" .pl)"
		if [ ! -f "$tmp/$f" ]; then
			echo "run.sh: integration: $f does not exist" >&2
			record integration "$f" fail
			rc=1
			continue
		fi
		# What PostgreSQL's own `make check` (prove_check) sets up: TESTDIR holds
		# tmp_check/ (logs, data dirs, port locks), PG_REGRESS is used by
		# Cluster->init, PATH must find initdb/pg_ctl/postgres of the right version.
		# TESTDATADIR/TESTLOGDIR are what PostgreSQL 16+ reads instead of TESTDIR.
		# TMPDIR: the nodes' socket dirs (tempdir_short), kept by File::Temp when a
		# test fails, then go away with $tmp.
		if (cd "$tmp" && trib_as_user env \
			PERL5LIB="$perl5lib" \
			PG_REGRESS="$pg_regress" \
			TESTDIR="$tmp" \
			TESTDATADIR="$tmp/tmp_check" \
			TESTLOGDIR="$tmp/tmp_check/log" \
			PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-120}" \
			TMPDIR="$tmp/tmp" \
			prove --timer "${flags[@]}" "$f") 2>&1 | quiet_tap; then
			record integration "$f" ok
		else
			record integration "$f" fail
			show_integration_logs "$name"
			rc=1
		fi
	done
	return "$rc"
}

# ---------------------------------------------------------------------------------------

status=0
if want regress; then
	run_regress || status=1
fi
if want pgtap; then
	run_pgtap || status=1
fi
# A crashed or erroring backend/worker shows up in the server log, not in the diffs.
if [ "$status" -ne 0 ] && [ -f "$tmp/cluster/log/postgresql.log" ]; then
	echo "---- last 80 lines of $tmp/cluster/log/postgresql.log"
	tail -n 80 "$tmp/cluster/log/postgresql.log"
	echo "---- end of server log"
fi
# Integration tests bring their own nodes; free the harness cluster's resources first.
if [ "$cluster_up" = 1 ]; then
	trib_cluster_stop "$tmp/cluster"
	cluster_up=0
fi
if want integration; then
	run_integration || status=1
fi
exit "$status"
