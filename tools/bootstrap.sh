#!/usr/bin/env bash
# Installs what tributary needs to build, test and run its demo on a Debian 12 machine
# that has only the PostgreSQL 15 server (and node-postgres for the client examples in
# test/clients/node). Idempotent: installs only what is missing, and runs
# `apt-get update` only when something is missing.
set -euo pipefail

packages=(
	build-essential
	postgresql-15
	postgresql-server-dev-15
	librdkafka-dev
	libhiredis-dev
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	kcat
	redis-server
	redis-tools
	libipc-run-perl
	libpq-dev
	python3-psycopg
)
# The fan-out's client examples (test/clients/) run with Node.js and node-postgres: Debian's
# nodejs and npm only where no Node.js with npm is installed already.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	packages+=(nodejs npm)
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# node-postgres for test/clients/node, from its package-lock.json (needs the npm registry).
node_clients() {
	if [ ! -f "$repo/test/clients/node/node_modules/pg/package.json" ]; then
		echo "bootstrap: npm ci in test/clients/node" >&2
		(cd "$repo/test/clients/node" && npm ci --no-audit --no-fund --silent)
	fi
}

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	node_clients
	exit 0
fi

echo "bootstrap: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Debian's postgresql-common creates a default cluster on install; we never use it.
if [ ! -f /etc/postgresql-common/createcluster.conf ] || ! grep -q '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf; then
	$sudo mkdir -p /etc/postgresql-common
	echo 'create_main_cluster = false' | $sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# redis-server's package starts a system instance; tests start their own on a private port.
if command -v systemctl >/dev/null 2>&1; then
	$sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
node_clients
