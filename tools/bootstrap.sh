#!/usr/bin/env bash
# Installs what tributary needs to build, test and run its demo on a Debian 12 machine
# that has only the PostgreSQL 15 server. Idempotent: installs only what is missing, and runs
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
	libipc-run-perl
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
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
