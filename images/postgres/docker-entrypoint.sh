#!/usr/bin/env bash
# Entrypoint of the local ficus/postgres image, built from Debian's
# postgresql-15 packages by scripts/images.sh.
#
# It honours the environment and arguments of the upstream `postgres` image:
#   POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)  superuser password
#   POSTGRES_USER     superuser name; defaults to postgres
#   POSTGRES_DB       database created on first start; defaults to the user
#   PGDATA            data directory; defaults to /var/lib/postgresql/data
#   POSTGRES_HOST_AUTH_METHOD  auth for TCP clients; defaults to
#                     scram-sha-256 (md5 and trust also work)
#   POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR  passed to initdb
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sh  run once, on first init
# Arguments: `postgres -c wal_level=logical ...`; when the first argument
# starts with "-", "postgres" is put in front. Any other command is run as is.
#
# Started as root, it prepares the directories and re-executes itself as the
# postgres user with setpriv (util-linux); the server never runs as root.
#
# "database system is ready to accept connections" is logged twice on the
# first start, exactly like the upstream image: first by the temporary server
# that runs the init scripts (it listens on the Unix socket only), then by the
# real server once it accepts TCP connections. On a later start with an
# existing data directory it is logged once. Wait for the second occurrence
# (testcontainers: wait.ForLog(...).WithOccurrence(2)) or for the TCP port.
set -Eeo pipefail

# file_env reads VAR from VAR_FILE when that is set (Docker secrets).
file_env() {
	local var="$1" file_var="${1}_FILE" def="${2:-}"
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		echo >&2 "error: both $var and $file_var are set (but are exclusive)"
		exit 1
	fi
	local val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!file_var:-}" ]; then
		val="$(<"${!file_var}")"
	fi
	export "$var"="$val"
	unset "$file_var"
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

# create_dirs makes PGDATA and the socket directory, owned by postgres when
# running as root.
create_dirs() {
	local user
	user="$(id -u)"
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$user" = 0 ]; then
			find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
		fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi
	if [ "$user" = 0 ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       Set POSTGRES_PASSWORD to a non-empty value for the superuser, or
			       set POSTGRES_HOST_AUTH_METHOD=trust to allow all connections
			       without a password (never do that outside tests).
		EOM
		exit 1
	fi
	if [ "${#POSTGRES_PASSWORD}" -ge 100 ]; then
		echo >&2 "warning: POSTGRES_PASSWORD is 100 characters or longer; PostgreSQL may truncate it"
	fi
}

init_database_dir() {
	# initdb needs the running uid to have a passwd entry (docker run --user).
	if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
		echo >&2 "error: uid $(id -u) has no passwd entry; run as root or as postgres"
		exit 1
	fi
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
	fi
	# POSTGRES_INITDB_ARGS is word-split on purpose, like upstream.
	# shellcheck disable=SC2086
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		$POSTGRES_INITDB_ARGS "$@"
}

# setup_hba_conf lets TCP clients in from anywhere with a password (or the
# configured method). initdb's own lines keep local connections trusted.
setup_hba_conf() {
	local auth="${POSTGRES_HOST_AUTH_METHOD}"
	if [ "$1" = postgres ]; then
		shift
	fi
	if [ -z "$auth" ]; then
		auth="$(postgres -C password_encryption "$@")"
		auth="${auth:-scram-sha-256}"
	fi
	{
		echo
		if [ "$auth" = trust ]; then
			echo '# warning trust is enabled for all connections'
		fi
		printf 'host all all all %s\n' "$auth"
	} >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
	if [ "$1" = postgres ]; then
		shift
	fi
	# The temporary server listens on the Unix socket only, so nothing can
	# reach it over TCP before the init scripts are done.
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

psql_init() {
	PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
		--no-password --no-psqlrc "$@"
}

setup_db() {
	local exists
	exists="$(psql_init --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)"
	if [ -z "$exists" ]; then
		psql_init --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		echo
	fi
}

# process_init_files runs /docker-entrypoint-initdb.d in name order: *.sh
# is executed when executable and sourced otherwise, *.sql and *.sql.gz go
# through psql against POSTGRES_DB.
process_init_files() {
	local f
	echo
	for f in "$@"; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "$0: running $f"
				"$f"
			else
				echo "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			echo "$0: running $f"
			psql_init --dbname "$POSTGRES_DB" -f "$f"
			echo
			;;
		*.sql.gz)
			echo "$0: running $f"
			gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB"
			echo
			;;
		*) echo "$0: ignoring $f" ;;
		esac
		echo
	done
}

# want_help reports whether the postgres arguments only ask for information
# (--version, --help, --describe-config), which needs no data directory.
want_help() {
	local arg
	for arg; do
		case "$arg" in
		-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

main() {
	if [ "${1:0:1}" = - ]; then
		set -- postgres "$@"
	fi
	if [ "$1" != postgres ] || want_help "$@"; then
		exec "$@"
	fi

	setup_env
	create_dirs
	if [ "$(id -u)" = 0 ]; then
		export HOME=/var/lib/postgresql
		exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
	fi

	if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
		verify_minimum_env
		init_database_dir
		setup_hba_conf "$@"
		export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
		temp_server_start "$@"
		setup_db
		shopt -s nullglob
		process_init_files /docker-entrypoint-initdb.d/*
		shopt -u nullglob
		temp_server_stop
		unset PGPASSWORD
		echo
		echo 'PostgreSQL init process complete; ready for start up.'
		echo
	else
		echo
		echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
		echo
	fi
	exec "$@"
}

main "$@"
