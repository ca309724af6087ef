#!/usr/bin/env bash
# bench/redis_read_cost.sh: what reading a stream key costs redis-server itself, per entry,
# by the way it is read: XREAD (no group), XREADGROUP with XACK of every batch (as tributary
# reads), XREADGROUP ... NOACK (no pending entries list). No PostgreSQL.
#
# Starts a redis-server of its own on a free loopback port (no persistence, stopped at exit),
# loads N entries of five field-value pairs (as bench/redis_ingest.sh's key `bench`) with
# redis-cli --pipe, then reads them all in batches of 10000 with redis-cli, output discarded,
# once per mode (each XREADGROUP mode with a group of its own, from the first entry), and
# prints redis-server's CPU time (/proc, clock ticks) and the wall time of each. The client is
# redis-cli and awk, so the wall time is mostly theirs; the CPU time is the server's.
#
# Usage: bench/redis_read_cost.sh [N=1000000] [MODE...]   (modes: xread xreadgroup xreadgroup_noack)
# Run by hand; tests never run it.
set -euo pipefail

n="${1:-1000000}"
shift || true
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(xread xreadgroup xreadgroup_noack)
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/redis_read_cost.sh [N] [MODE...]" >&2; exit 2; }
# shellcheck source=test/lib/redis.sh
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib/redis.sh"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tributary-rcost.XXXXXX")"
redis_pid=""
cleanup() {
	local rc=$?
	if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; fi
	rm -rf "$tmp"
	return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

trib_redis_start "$tmp" || exit 1
port="$redis_port"
r() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }

LC_ALL=C awk -v n="$n" 'BEGIN {
	ORS = ""
	for (i = 1; i <= n; i++) {
		id = i ""; name = "user-" i % 10000; tag = "tag-" i % 37
		printf "*13\r\n$4\r\nXADD\r\n$5\r\nbench\r\n$1\r\n*\r\n"
		printf "$2\r\nid\r\n$%d\r\n%s\r\n$4\r\nname\r\n$%d\r\n%s\r\n", length(id), id, length(name), name
		printf "$2\r\nat\r\n$24\r\n2026-11-23T00:00:00.001Z\r\n$5\r\nvalue\r\n$19\r\n0.14285714285714285\r\n"
		printf "$3\r\ntag\r\n$%d\r\n%s\r\n", length(tag), tag
	}
}' | r --pipe | tail -n 1

hz="$(getconf CLK_TCK)"
cpu_ms() { awk -v hz="$hz" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$redis_pid/stat"; }

read_all() {	# mode: read every entry in batches of 10000, acknowledging with xreadgroup
	local mode="$1" group="g-$1" last="0-0" c0 t0
	case "$mode" in
	xread) ;;
	xreadgroup | xreadgroup_noack) r XGROUP CREATE bench "$group" 0 >/dev/null ;;
	*) echo "unknown mode $mode" >&2; exit 2 ;;
	esac
	c0="$(cpu_ms)"
	t0="$(date +%s%3N)"
	while :; do
		case "$mode" in
		xread) r XREAD COUNT 10000 STREAMS bench "$last" >"$tmp/out" ;;
		xreadgroup) r XREADGROUP GROUP "$group" c COUNT 10000 STREAMS bench '>' >"$tmp/out" ;;
		xreadgroup_noack) r XREADGROUP GROUP "$group" c COUNT 10000 NOACK STREAMS bench '>' >"$tmp/out" ;;
		esac
		[ "$(wc -l <"$tmp/out")" -gt 1 ] || break
		# raw output: the key, then per entry its id and 10 lines of pairs
		awk 'NR > 1 && (NR - 2) % 11 == 0' "$tmp/out" >"$tmp/ids"
		last="$(tail -n 1 "$tmp/ids")"
		if [ "$mode" = xreadgroup ]; then
			xargs -a "$tmp/ids" redis-cli -h 127.0.0.1 -p "$port" XACK bench "$group" >/dev/null
		fi
	done
	awk -v m="$mode" -v c=$(($(cpu_ms) - c0)) -v w=$(($(date +%s%3N) - t0)) -v n="$n" 'BEGIN {
		printf "%-17s redis-server CPU %6d ms, %.2f us per entry (wall %d ms)\n", m, c, 1000 * c / n, w }'
}
for m in "${modes[@]}"; do read_all "$m"; done
echo "pending entries left in the groups: $(r XINFO GROUPS bench | awk 'prev == "pending" { s += $0 } { prev = $0 } END { print s + 0 }')"
