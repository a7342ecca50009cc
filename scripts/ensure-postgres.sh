#!/usr/bin/env bash
# ensure-postgres.sh: the step "make test" and "make demo" share. ficus finds
# PostgreSQL on its own (a URL, else Docker, else local binaries; see
# internal/pgserver); this makes sure at least one of them exists, so both
# quick-start commands work on a fresh Debian machine with nothing done first.
set -euo pipefail

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }

if [ -n "${FICUS_TEST_DATABASE_URL:-}${FICUS_DATABASE_URL:-}" ]; then
	exit 0 # the user named a server
fi
if [ "${FICUS_POSTGRES_PROVIDER:-}" != "local" ] && timeout 10 docker info >/dev/null 2>&1; then
	exit 0 # containers
fi
if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	exit 0 # local binaries
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	say "no PostgreSQL found: start Docker, set FICUS_TEST_DATABASE_URL to a server with wal_level=logical,"
	say "or install the PostgreSQL server (Debian/Ubuntu: sudo apt-get install postgresql)"
	exit 1
fi
say "no Docker and no PostgreSQL binaries: installing Debian's postgresql (server binaries only; no cluster is started)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the package from starting a system-wide cluster.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
say "installed: $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)"
