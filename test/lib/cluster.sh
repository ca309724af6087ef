# shellcheck shell=bash
#
# test/lib/cluster.sh: throwaway PostgreSQL clusters for tributary's tests and demo.
#
# Source this file (it defines functions only and sets no shell options):
#
#   source test/lib/cluster.sh
#   trib_cluster_start "$dir" "tributary.database = 'demo'"   # initdb + start, exports PG* vars
#   psql -c 'SELECT 1'                                        # plain psql now reaches it
#   trib_cluster_stop "$dir"
#
# Functions:
#   trib_os_user                 OS user the server runs as (initdb refuses to run as root):
#                                as root, `postgres` if it exists, else a system user
#                                `tributary` created on demand; otherwise the current user.
#   trib_as_user CMD [ARGS...]   run CMD as that user (runuser when root), with a writable
#                                HOME and the PostgreSQL bindir first in PATH.
#   trib_pg_bindir               PostgreSQL bindir, from `$PG_CONFIG --bindir`.
#   trib_cluster_start DIR [LINE...]
#                                initdb DIR/data, append our settings and then LINE...
#                                (later lines win, so LINEs override the defaults), start it
#                                listening on the unix socket DIR/sock only, log to
#                                DIR/log/postgresql.log, and export PGHOST, PGPORT, PGUSER,
#                                PGDATABASE=postgres, TRIB_PGDATA and TRIB_PGBIN.
#                                The database named by tributary.database is created
#                                before the first start. DIR/data must not exist yet.
#   trib_cluster_stop DIR        stop it (fast, falling back to immediate); quiet and
#                                successful if it is not running.
#
# Knobs: PG_CONFIG (default pg_config, like the Makefile); TRIB_CLUSTER_TCP=1 also listens
# on 127.0.0.1:PORT (the port is always probed free on 127.0.0.1 so this is safe).

# PostgreSQL's bindir (initdb, pg_ctl, postgres live there, not in /usr/bin on Debian).
trib_pg_bindir() {
	"${PG_CONFIG:-pg_config}" --bindir
}

# The OS user that owns and runs the server.
trib_os_user() {
	if [ "$(id -u)" -ne 0 ]; then
		id -un
		return 0
	fi
	if getent passwd postgres >/dev/null 2>&1; then
		echo postgres
		return 0
	fi
	if ! getent passwd tributary >/dev/null 2>&1; then
		useradd --system --create-home --shell /bin/bash tributary >&2 || return 1
	fi
	echo tributary
}

# Run a command as trib_os_user. As root this uses runuser; HOME is the user's home when
# the user can write it, else a private directory under the system temp dir. PATH gets the
# PostgreSQL bindir first so initdb/pg_ctl/postgres resolve to the server's version.
trib_as_user() {
	local user bindir home
	user="$(trib_os_user)" || return 1
	bindir="$(trib_pg_bindir)" || return 1
	if [ "$(id -u)" -ne 0 ]; then
		PATH="$bindir:$PATH" "$@"
		return
	fi
	home="$(getent passwd "$user" | cut -d: -f6)"
	if [ -z "$home" ] || ! runuser -u "$user" -- test -w "$home"; then
		home="${TMPDIR:-/tmp}/tributary-home-$user"
		mkdir -p "$home"
		chown "$user:" "$home"
		chmod 700 "$home"
	fi
	runuser -u "$user" -- env HOME="$home" USER="$user" LOGNAME="$user" \
		PATH="$bindir:$PATH" "$@"
}

# Print a TCP port in [15432, 25431] nobody listens on at 127.0.0.1, probing from a random
# start. Unix-socket-only clusters cannot collide (each has a private socket dir), but a
# free port keeps TRIB_CLUSTER_TCP=1 and anything else that assumes TCP safe.
_trib_free_port() {
	local start port i
	start=$((15432 + RANDOM % 10000))
	for ((i = 0; i < 10000; i++)); do
		port=$((15432 + (start - 15432 + i) % 10000))
		# A successful connect means the port is taken.
		if ! timeout 2 bash -c ": </dev/tcp/127.0.0.1/$port" 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	echo "cluster.sh: no free port found" >&2
	return 1
}

trib_cluster_start() {
	if [ $# -lt 1 ] || [ -z "$1" ]; then
		echo "usage: trib_cluster_start DIR [postgresql.conf line...]" >&2
		return 2
	fi
	local dir user bindir port listen line
	dir="$(realpath -m "$1")"
	shift
	user="$(trib_os_user)" || return 1
	bindir="$(trib_pg_bindir)" || return 1

	if [ -e "$dir/data" ]; then
		echo "cluster.sh: $dir/data already exists; stop it and remove it first" >&2
		return 1
	fi
	mkdir -p "$dir/data" "$dir/sock" "$dir/log"
	chmod 700 "$dir/data"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R "$user:" "$dir"
	fi
	if ! trib_as_user test -w "$dir/data"; then
		echo "cluster.sh: $user cannot write $dir (check the permissions of its parents)" >&2
		rmdir "$dir/data" 2>/dev/null || true
		return 1
	fi
	# The socket path must fit in sun_path (107 bytes) including "/.s.PGSQL.NNNNN".
	if [ "${#dir}" -gt 85 ]; then
		echo "cluster.sh: '$dir' is too long for a unix socket path; use a shorter DIR" >&2
		return 1
	fi

	# Fixed locale and encoding: results must not depend on the caller's environment.
	if ! (cd "$dir" && trib_as_user initdb -D "$dir/data" -A trust --no-sync \
		--encoding=UTF8 --locale=C >"$dir/log/initdb.log" 2>&1); then
		echo "cluster.sh: initdb failed:" >&2
		cat "$dir/log/initdb.log" >&2
		return 1
	fi

	port="$(_trib_free_port)" || return 1
	listen="''"
	if [ "${TRIB_CLUSTER_TCP:-0}" = 1 ]; then
		listen="'127.0.0.1'"
	fi
	{
		echo ""
		echo "# Added by test/lib/cluster.sh"
		echo "port = $port"
		echo "listen_addresses = $listen"
		echo "unix_socket_directories = '$dir/sock'"
		echo "shared_preload_libraries = 'tributary'"
		echo "tributary.database = 'contrib_regression'"
		echo "max_worker_processes = 32"
		echo "fsync = off"
		echo "log_line_prefix = '%m [%p] %q%b %a '"
		for line in "$@"; do
			echo "$line"
		done
	} >>"$dir/data/postgresql.conf"

	# Create the launcher's database (tributary.database, after overrides) before the
	# first start, in single-user mode without the preload, so the launcher finds it from
	# its first moment instead of exiting on "database does not exist".
	local tribdb
	tribdb="$(cd "$dir" && trib_as_user postgres -D "$dir/data" -C tributary.database 2>/dev/null)" ||
		tribdb=""
	case "$tribdb" in
	"" | postgres | template0 | template1) ;;
	*)
		if ! (cd "$dir" && printf 'CREATE DATABASE "%s"\n' "${tribdb//\"/\"\"}" |
			trib_as_user postgres --single -D "$dir/data" -c shared_preload_libraries= \
				-c exit_on_error=on postgres >"$dir/log/createdb.log" 2>&1); then
			echo "cluster.sh: could not create database '$tribdb':" >&2
			cat "$dir/log/createdb.log" >&2
			return 1
		fi
		;;
	esac

	if ! (cd "$dir" && trib_as_user pg_ctl -D "$dir/data" -l "$dir/log/postgresql.log" \
		-w -t 60 start >"$dir/log/pg_ctl.log" 2>&1); then
		echo "cluster.sh: pg_ctl start failed; last lines of $dir/log/postgresql.log:" >&2
		tail -n 40 "$dir/log/postgresql.log" >&2 || true
		return 1
	fi

	export PGHOST="$dir/sock"
	export PGPORT="$port"
	export PGUSER="$user"
	export PGDATABASE=postgres
	export TRIB_PGDATA="$dir/data"
	export TRIB_PGBIN="$bindir"
}

trib_cluster_stop() {
	if [ $# -lt 1 ] || [ -z "$1" ]; then
		echo "usage: trib_cluster_stop DIR" >&2
		return 2
	fi
	local dir
	dir="$(realpath -m "$1")"
	[ -f "$dir/data/postmaster.pid" ] || return 0
	(cd "$dir" && trib_as_user pg_ctl -D "$dir/data" -m fast -w -t 30 stop) >/dev/null 2>&1 ||
		(cd "$dir" && trib_as_user pg_ctl -D "$dir/data" -m immediate -w -t 30 stop) >/dev/null 2>&1 ||
		true
}
