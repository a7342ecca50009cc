#!/usr/bin/env bash
# bench/run.sh: the side-by-side proxy benchmark behind "make bench". One
# run, on 127.0.0.1 only, against one fixed upstream (bench/upstream) with one
# fixed load generator (wrk), of:
#
#   direct           the upstream itself, no proxy
#   bare             net/http/httputil.ReverseProxy, tuned (bench/bareproxy)
#   ficus-memory     ficus proxy, every feature on, memory idempotency store
#   ficus-reverseproxy
#                    the same with --direct-path=false: every request goes
#                    through httputil.ReverseProxy instead of the direct path
#   ficus-previous   ficus-memory as built from BENCH_PREVIOUS, an earlier
#                    commit, with that build's defaults: what the changes
#                    since then cost or gained, in the same run
#   ficus-postgres   ficus proxy, every feature on, Postgres idempotency store
#   ficus-trace-1    ficus-memory with tracing on, sampling 1% of the
#                    requests (OTEL_TRACES_SAMPLER=parentbased_traceidratio,
#                    OTEL_TRACES_SAMPLER_ARG=0.01), spans exported over
#                    OTLP/HTTP to bench/upstream's /v1/traces
#   ficus-trace-100  the same sampling every request
#   nginx            nginx as a plain reverse proxy with a keep-alive pool
#   haproxy          HAProxy as a plain reverse proxy with connection reuse
#
# Per scenario (GET, and POST with a unique Idempotency-Key), in rounds
# that each run every contender once: measured saturating runs (wrk), then
# constant-rate runs (bench/loadgen) at half of the bare ReverseProxy's
# saturated rate, each on a contender started afresh and warmed up for it.
# A contender that cannot run here is reported as n/a with the reason; the
# others still run. The table goes to stdout and to
# bench/results/latest.md. See bench/README.md.
#
# Environment (defaults in brackets):
#   BENCH_DURATION     measured run length, Ns or Nm [10s]
#   BENCH_WARMUP       warm-up run length [5s]
#   BENCH_CONNECTIONS  concurrent keep-alive connections [64]
#   BENCH_ROUNDS       rounds per scenario, each a measured run of every
#                      contender; the run with the median rate (half load:
#                      median p99) is reported, and the added p99 is the
#                      median of the per-round differences to direct [1]
#   BENCH_SCENARIOS    "get", "post" or both ["get post"]
#   BENCH_CONTENDERS   which contenders, in table order [all ten above]
#   BENCH_PREVIOUS     the commit ficus-previous is built from [c5d164a]
#   BENCH_CPU_LOAD, BENCH_CPU_PROXY, BENCH_CPU_UPSTREAM
#                      taskset CPU lists [0, 1, 0 on two or more CPUs]
#   BENCH_PIN          0 runs everything unpinned [1]
#   BENCH_QUIET_WAIT   seconds to wait, before each round, for other work
#                      to use at most 10% of the CPUs [60]
#   BENCH_MAX_OTHER    a measured run during which other processes used more
#                      than this percentage of the CPUs is run again [10]
#   BENCH_RETRIES      how many times at most [2]
#   BENCH_FICUS        a prebuilt ficus binary [build ./cmd/ficus]
#   BENCH_DATABASE_URL a Postgres for ficus-postgres [throwaway local
#                      cluster, else a container of FICUS_POSTGRES_IMAGE;
#                      FICUS_POSTGRES_PROVIDER=docker prefers the container]
#   BENCH_PG_DURABLE   1 keeps Postgres's fsync and synchronous_commit on [0]
#   BENCH_OUT          where the table is written [bench/results/latest.md]
#   BENCH_KEEP_WORK    1 keeps the temporary directory (configs, logs) [0]
#   GO                 the go command [go]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

# ---------------------------------------------------------------- settings

duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-5s}"
conns="${BENCH_CONNECTIONS:-64}"
rounds="${BENCH_ROUNDS:-1}"
scenarios="${BENCH_SCENARIOS:-get post}"
all_contenders="direct bare ficus-memory ficus-trace-1 ficus-trace-100 ficus-reverseproxy ficus-previous ficus-postgres nginx haproxy"
contenders="${BENCH_CONTENDERS:-$all_contenders}"
previous="${BENCH_PREVIOUS:-c5d164a}"
out="${BENCH_OUT:-bench/results/latest.md}"
GO="${GO:-go}"

# seconds DURATION prints the duration ("15s", "2m") in seconds.
seconds() {
	case "$1" in
	*[0-9]s) echo "${1%s}" ;;
	*[0-9]m) echo $((${1%m} * 60)) ;;
	*) return 1 ;;
	esac
}
for knob in duration warmup; do
	value="${!knob}"
	[[ "$value" =~ ^[1-9][0-9]*[sm]$ ]] ||
		die "BENCH_${knob^^}=$value: want whole seconds or minutes such as 10s or 1m"
done
if ! [[ "$conns" =~ ^[1-9][0-9]*$ ]] || [ "$conns" -gt 4096 ]; then
	die "BENCH_CONNECTIONS=$conns: want a number of connections from 1 to 4096"
fi
[[ "$rounds" =~ ^[1-9]$ ]] || die "BENCH_ROUNDS=$rounds: want 1 to 9 measured runs per contender and scenario"
dur_s="$(seconds "$duration")"
warm_s="$(seconds "$warmup")"
for s in $scenarios; do
	[[ "$s" == get || "$s" == post ]] || die "BENCH_SCENARIOS: unknown scenario '$s' (want get and/or post)"
done
for c in $contenders; do
	[[ " $all_contenders " == *" $c "* ]] || die "BENCH_CONTENDERS: unknown contender '$c' (want some of: $all_contenders)"
done

# Pinning and the shared settings: see bench_settings in bench/lib.sh.
bench_settings
[ -n "$pin_note" ] || pin_note="load generator on CPU $cpu_load, upstream (and Postgres) on CPU $cpu_upstream, contender on CPU $cpu_proxy"

# ------------------------------------------------------------------- tools

need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || need+=(haproxy)
if [ "${#need[@]}" -gt 0 ]; then
	apt_install "${need[@]}" || say "could not install ${need[*]}: contenders that need them are n/a"
fi
command -v wrk >/dev/null || die "wrk is missing and could not be installed (Debian: apt-get install wrk)"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"
command -v curl >/dev/null || die "curl is missing (Debian: apt-get install curl)"

# --------------------------------------------------------------- processes

work="$(mktemp -d /tmp/ficus-bench.XXXXXX)"
chmod 755 "$work"
pids=()          # every process started, for the EXIT trap
contender_pids=() # the processes of the contender being measured
container=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "${#pids[@]}" -gt 0 ]; then stop_pids "${pids[@]}"; fi
	if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
	if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port PORT PID waits up to 15s for PORT to accept connections while PID
# lives.
wait_port() {
	local port="$1" pid="$2" i
	for ((i = 0; i < 150; i++)); do
		if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

log_tail() { tail -n "${2:-15}" "$work/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true; }

# ------------------------------------------------------------------ builds

say "building bench/upstream, bench/bareproxy, bench/loadgen"
mkdir -p "$work/bin"
CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/" ./bench/upstream ./bench/bareproxy ./bench/loadgen ||
	die "building the bench programs failed"

ficus="" ficus_note=""
if [ -n "${BENCH_FICUS:-}" ]; then
	ficus="$BENCH_FICUS"
else
	say "building ficus (./cmd/ficus)"
	if CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/ficus" ./cmd/ficus 2>"$work/ficus-build.log"; then
		ficus="$work/bin/ficus"
	else
		ficus_note="n/a (build failed)"
		say "ficus does not build; its contenders are n/a:"
		log_tail ficus-build 10
	fi
fi
# ficus-previous: the same command built from an earlier commit, from a
# copy of that commit's tree (git archive), so the checkout is untouched.
previous_ficus="" previous_note=""
if [[ " $contenders " == *" ficus-previous "* ]]; then
	previous_rev="$(git -C "$root" rev-parse --short "$previous^{commit}" 2>/dev/null || true)"
	if [ -z "$previous_rev" ]; then
		previous_note="n/a (BENCH_PREVIOUS=$previous is not a commit of this repository)"
	else
		say "building ficus at $previous_rev (BENCH_PREVIOUS) for ficus-previous"
		mkdir -p "$work/previous"
		if git -C "$root" archive "$previous_rev" | tar -x -C "$work/previous" &&
			(cd "$work/previous" && CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/ficus-previous" ./cmd/ficus) \
				2>"$work/previous-build.log"; then
			previous_ficus="$work/bin/ficus-previous"
		else
			previous_note="n/a (building $previous_rev failed)"
			log_tail previous-build 10
		fi
	fi
fi

# The help is read whole before it is searched: "grep -q" in a pipe exits at
# the first match, and under pipefail the SIGPIPE that ficus then gets for
# the rest of its help would make a working binary look like one without
# the command.
ficus_help=""
[ -z "$ficus" ] || ficus_help="$("$ficus" proxy --help 2>/dev/null || true)"
if [ -n "$ficus" ] && [[ "$ficus_help" != *--upstream* ]]; then
	ficus_note="n/a (not built)"
	say "this ficus has no 'proxy' command: its contenders are n/a"
fi
# The runtime tweaks for one CPU are opt-in (docs/proxy.md); the benchmark
# runs ficus on one CPU with both, as its published figures were measured,
# and so every ficus contender (ficus-previous too, whose build had them on
# by default) runs with the same settings.
ficus_tweaks=()
ficus_env=() # environment of a ficus contender (tracing)
[[ "$ficus_help" != *--steady-sysmon* ]] || ficus_tweaks+=(--steady-sysmon)
[[ "$ficus_help" != *--gc-floor-mib* ]] || ficus_tweaks+=(--gc-floor-mib 16)

# The tenant's API key: the proxy knows only its SHA-256. Every contender
# gets the same header so every request has the same size on the wire.
api_key="ficus-bench-key-0123456789abcdef"
api_key_sha256="$(printf '%s' "$api_key" | sha256sum | cut -d' ' -f1)"
headers=(-H "X-Api-Key: $api_key")
get_path=/api/v1/orders/ord-000042
post_path=/api/v1/orders
post_body='{"client_ref":"bench-0001","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}'

# ---------------------------------------------------------------- upstream

upstream_port=""
free_port upstream_port
spawn upstream "$cpu_upstream" "$work/bin/upstream" -listen "127.0.0.1:$upstream_port" -procs 1
wait_port "$upstream_port" "$spawned" || {
	log_tail upstream
	die "the upstream did not start"
}
upstream_url="http://127.0.0.1:$upstream_port"

# --------------------------------------------------------------- postgres

pg_url="" pg_note="" pg_pid=""
# start_postgres sets pg_url, or pg_note when no Postgres can be had.
start_postgres() {
	if [ -n "${BENCH_DATABASE_URL:-}" ]; then
		pg_url="$BENCH_DATABASE_URL" pg_source="BENCH_DATABASE_URL"
		return 0
	fi
	local bin port durable=()
	bin="$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)"
	free_port port
	if [ "${BENCH_PG_DURABLE:-0}" != 1 ]; then
		durable=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
	fi
	if [ "${FICUS_POSTGRES_PROVIDER:-}" = docker ]; then
		bin="" # FICUS_POSTGRES_PROVIDER=docker: a container even when local binaries exist
	fi
	if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then
		local as=()
		rm -rf "$work/pg" # a fresh cluster for every start, as every contender is fresh
		mkdir -p "$work/pg"
		if [ "$(id -u)" -eq 0 ]; then
			id postgres >/dev/null 2>&1 || {
				pg_note="n/a (running as root and no 'postgres' user for a local cluster)"
				return 1
			}
			chown postgres: "$work/pg"
			as=(setpriv --reuid=postgres --regid="$(id -g postgres)" --clear-groups --)
		fi
		"${as[@]}" "$bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
			>"$work/initdb.log" 2>&1 || {
			log_tail initdb
			pg_note="n/a (initdb failed)"
			return 1
		}
		spawn postgres "$cpu_upstream" "${as[@]}" "$bin/postgres" -D "$work/pg/data" -k "$work/pg" -p "$port" \
			-c listen_addresses=127.0.0.1 -c max_connections=200 "${durable[@]}"
		pg_pid="$spawned"
		pg_source="local cluster ($bin)"
	elif [ -n "${FICUS_POSTGRES_IMAGE:-}" ] && timeout 10 docker info >/dev/null 2>&1; then
		container="ficus-bench-pg-$$"
		docker run -d --rm --name "$container" -p "127.0.0.1:$port:5432" \
			-e POSTGRES_PASSWORD=ficus -e POSTGRES_INITDB_ARGS=--no-sync \
			"$FICUS_POSTGRES_IMAGE" postgres -c max_connections=200 "${durable[@]}" >/dev/null || {
			container=""
			pg_note="n/a (docker run $FICUS_POSTGRES_IMAGE failed)"
			return 1
		}
		pg_source="container $FICUS_POSTGRES_IMAGE"
	else
		pg_note="n/a (no Postgres: install postgresql, or start Docker with FICUS_POSTGRES_IMAGE set, or set BENCH_DATABASE_URL)"
		return 1
	fi
	local password=""
	[ -n "$container" ] && password=":ficus"
	pg_url="postgres://postgres${password}@127.0.0.1:$port/postgres?sslmode=disable"
	local i
	for ((i = 0; i < 300; i++)); do
		if "$ficus" migrate status --database-url "$pg_url" >/dev/null 2>&1; then return 0; fi
		if [ -n "$pg_pid" ] && ! kill -0 "$pg_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	log_tail postgres
	pg_note="n/a (Postgres did not come up)"
	return 1
}

stop_postgres() {
	if [ -n "$pg_pid" ]; then
		kill -INT "$pg_pid" 2>/dev/null || true # fast shutdown
		stop_pids "$pg_pid"
		pg_pid=""
	fi
	if [ -n "$container" ]; then
		docker rm -f "$container" >/dev/null 2>&1 || true
		container=""
	fi
}

# ------------------------------------------------------------- contenders

# start_CONTENDER starts it pinned to $cpu_proxy, sets $base (its URL) and
# adds its processes to contender_pids; on failure it sets $note.

start_direct() { base="$upstream_url"; }

start_bare() {
	local port
	free_port port
	spawn bare "$cpu_proxy" "$work/bin/bareproxy" -listen "127.0.0.1:$port" -upstream "$upstream_url" \
		-max-idle-conns-per-host 512
	contender_pids+=("$spawned")
	wait_port "$port" "$spawned" || {
		log_tail bare
		note="failed to start"
		return 1
	}
	base="http://127.0.0.1:$port"
}

# start_ficus STORE NAME [BINARY [FLAG...]] starts ficus proxy (BINARY, by
# default the one built here) with the given extra flags.
start_ficus() {
	local store="$1" name="$2" bin="${3:-$ficus}" port mport db=()
	shift $(($# < 3 ? $# : 3))
	local extra=("$@")
	if [ -n "$ficus_note" ]; then
		note="$ficus_note"
		return 1
	fi
	if [ "$store" = postgres ]; then
		if ! start_postgres; then
			note="$pg_note"
			return 1
		fi
		say "ficus migrate up ($pg_source)"
		if ! "$ficus" migrate up --database-url "$pg_url" >"$work/migrate.log" 2>&1; then
			log_tail migrate
			note="failed: ficus migrate up"
			return 1
		fi
		db=(--database-url "$pg_url")
	fi
	sed -e "s|@UPSTREAM@|$upstream_url|" -e "s|@KEY_SHA256@|$api_key_sha256|" -e "s|@STORE@|$store|" \
		bench/ficus-proxy.yaml >"$work/$name.yaml"
	free_port port
	free_port mport
	spawn "$name" "$cpu_proxy" env -u FICUS_DATABASE_URL -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
		"${ficus_env[@]}" "$bin" proxy --listen "127.0.0.1:$port" \
		--upstream "$upstream_url" --config "$work/$name.yaml" --metrics-listen "127.0.0.1:$mport" "${db[@]}" \
		"${ficus_tweaks[@]}" "${extra[@]}"
	contender_pids+=("$spawned")
	wait_port "$port" "$spawned" || {
		log_tail "$name"
		note="failed to start"
		return 1
	}
	base="http://127.0.0.1:$port"
	metrics_url="http://127.0.0.1:$mport/metrics"
}
start_ficus-memory() { start_ficus memory ficus-memory; }
# start_ficus_traced NAME RATIO starts ficus-memory with tracing on,
# sampling RATIO of the traces, exporting to the upstream's /v1/traces.
start_ficus_traced() {
	ficus_env=(OTEL_EXPORTER_OTLP_ENDPOINT="$upstream_url" OTEL_TRACES_SAMPLER=parentbased_traceidratio
		OTEL_TRACES_SAMPLER_ARG="$2" OTEL_SERVICE_NAME=ficus-bench)
	local rc=0
	start_ficus memory "$1" || rc=$?
	ficus_env=()
	return "$rc"
}
start_ficus-trace-1() { start_ficus_traced ficus-trace-1 0.01; }
start_ficus-trace-100() { start_ficus_traced ficus-trace-100 1; }
start_ficus-postgres() { start_ficus postgres ficus-postgres; }
start_ficus-reverseproxy() { start_ficus memory ficus-reverseproxy "$ficus" --direct-path=false; }
start_ficus-previous() {
	if [ -z "$previous_ficus" ]; then
		note="$previous_note"
		return 1
	fi
	start_ficus memory ficus-previous "$previous_ficus"
}

start_nginx() {
	local port
	if [ ! -x "$nginx_bin" ]; then
		note="n/a (nginx not installed)"
		return 1
	fi
	free_port port
	mkdir -p "$work/nginx/tmp"
	chmod -R 777 "$work/nginx/tmp"
	cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path $work/nginx/tmp/body;
	proxy_temp_path $work/nginx/tmp/proxy;
	fastcgi_temp_path $work/nginx/tmp/fastcgi;
	uwsgi_temp_path $work/nginx/tmp/uwsgi;
	scgi_temp_path $work/nginx/tmp/scgi;
	keepalive_requests 100000000;
	upstream bench {
		server 127.0.0.1:$upstream_port;
		keepalive 512;
		keepalive_requests 100000000;
	}
	server {
		listen 127.0.0.1:$port;
		location / {
			proxy_pass http://bench;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		}
	}
}
EOF
	spawn nginx "$cpu_proxy" "$nginx_bin" -p "$work/nginx" -e "$work/nginx/error.log" \
		-c "$work/nginx/nginx.conf" -g 'daemon off;'
	contender_pids+=("$spawned")
	wait_port "$port" "$spawned" || {
		log_tail nginx
		note="failed to start"
		return 1
	}
	base="http://127.0.0.1:$port"
}

start_haproxy() {
	local port
	if [ ! -x "$haproxy_bin" ]; then
		note="n/a (haproxy not installed)"
		return 1
	fi
	free_port port
	cat >"$work/haproxy.cfg" <<EOF
global
	nbthread 1
	maxconn 4096
defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	timeout http-keep-alive 30s
	option http-keep-alive
	option forwardfor
	http-reuse always
frontend bench
	bind 127.0.0.1:$port
	default_backend upstream
backend upstream
	server up 127.0.0.1:$upstream_port maxconn 512
EOF
	spawn haproxy "$cpu_proxy" "$haproxy_bin" -db -f "$work/haproxy.cfg"
	contender_pids+=("$spawned")
	wait_port "$port" "$spawned" || {
		log_tail haproxy
		note="failed to start"
		return 1
	}
	base="http://127.0.0.1:$port"
}

# -------------------------------------------------------------- measuring

declare -A other_at hl_other rps p50 p99 errs notes hl_p50 hl_p99 hl_p999 hl_errs hl_achieved hl_added half_rate hl_rounds

# smoke checks that GET and POST answer 2xx through the contender.
smoke() {
	local code
	code="$(curl -s -o "$work/smoke.body" -w '%{http_code}' --max-time 5 "${headers[@]}" "$base$get_path" || true)"
	if [[ "$code" != 2* ]]; then
		note="failed: GET answered ${code:-nothing}"
		say "$c: GET $get_path answered ${code:-nothing}: $(head -c 300 "$work/smoke.body" 2>/dev/null)"
		return 1
	fi
	code="$(curl -s -o "$work/smoke.body" -w '%{http_code}' --max-time 5 "${headers[@]}" \
		-H 'Content-Type: application/json' -H "Idempotency-Key: smoke-$c-$$" -d "$post_body" "$base$post_path" || true)"
	if [[ "$code" != 2* ]]; then
		note="failed: POST answered ${code:-nothing}"
		say "$c: POST $post_path answered ${code:-nothing}: $(head -c 300 "$work/smoke.body" 2>/dev/null)"
		return 1
	fi
}

# parse_wrk FILE prints "req/s p50_ms p99_ms requests errors".
parse_wrk() {
	awk '
	function ms(v,   n, u) {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") return n / 1000
		if (u == "s") return n * 1000
		if (u == "m") return n * 60000
		return n
	}
	/Requests\/sec:/ { r = $2 }
	/^ +50%/ { a = ms($2) }
	/^ +99%/ { b = ms($2) }
	/ requests in / { n = $1 }
	/Non-2xx or 3xx responses:/ { e += $NF }
	/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i + 0 }
	END { printf "%s %.3f %.3f %s %d\n", (r == "" ? "-" : r), a, b, (n == "" ? 0 : n), e }
	' "$1"
}

# wrk_run SCENARIO SECONDS TAG runs wrk against the contender; its output
# goes to $work/wrk-TAG.txt.
wrk_run() {
	local scn="$1" secs="$2" tag="$3" args=()
	if [ "$scn" = post ]; then
		args=(-s bench/post-idempotent.lua "$base$post_path" -- "$tag-$$-$RANDOM")
	else
		args=("$base$get_path")
	fi
	on "$cpu_load" timeout -k 5 $((secs + 30)) \
		wrk -t1 -c"$conns" -d"${secs}s" --latency "${headers[@]}" "${args[@]}" >"$work/wrk-$tag.txt" 2>&1
}

# loadgen_run SCENARIO RATE TAG runs the constant-rate pass; its line goes
# to $work/loadgen-TAG.out.
loadgen_run() {
	local scn="$1" rate="$2" tag="$3" args=()
	if [ "$scn" = post ]; then
		args=(-method POST -url "$base$post_path" -body "$post_body" -H 'Content-Type: application/json'
			-idempotency-key-prefix "$tag-$$-$RANDOM")
	else
		args=(-url "$base$get_path")
	fi
	on "$cpu_load" timeout -k 5 $((dur_s + 30)) "$work/bin/loadgen" -rate "$rate" -duration "$duration" \
		-connections "$conns" "${headers[@]}" "${args[@]}" \
		>"$work/loadgen-$tag.out" 2>"$work/loadgen-$tag.err"
}

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -n 1; }

# fresh C SCN KIND TAG starts contender C afresh, checks that it answers,
# warms it up with SCN and runs one measured pass of SCN, KIND wrk (the
# saturating run) or half (the constant-rate run), into the files of TAG;
# it scrapes ficus's counters and stops C. Every measured run gets a fresh
# process so that none inherits another's state: each POST run leaves its
# idempotency keys in ficus's memory store, and with rounds and repeats a
# run would otherwise measure a store of up to a million keys (where
# MemoryConfig.MaxKeys makes ficus refuse new ones) or, for GET, whatever
# the POST runs before it left. It sets start_failed (and note) when C does
# not start or answer.
fresh() {
	local c="$1" scn="$2" kind="$3" tag="$4" rc=0
	start_failed=0 note="" base="" metrics_url=""
	contender_pids=()
	if ! "start_$c" || ! smoke; then
		start_failed=1
		rc=1
	else
		wrk_run "$scn" "$warm_s" "$c-$scn-warmup" || true
		if [ "$kind" = wrk ]; then
			wrk_run "$scn" "$dur_s" "$tag" || rc=$?
		else
			loadgen_run "$scn" "${half_rate[$scn]}" "$tag" || rc=$?
		fi
		if [ -n "$metrics_url" ]; then
			# ficus's own counters show that its features were on and
			# rejected nothing: requests by lane and code, idempotency
			# outcomes, rejections.
			curl -s --max-time 5 "$metrics_url" |
				grep -E '^ficus_proxy_(requests|idempotency|ratelimit_rejected|shed|breaker_transitions)_total' \
					>>"$work/$c.counters.raw" || true
		fi
	fi
	if [ "${#contender_pids[@]}" -gt 0 ]; then stop_pids "${contender_pids[@]}"; fi
	if [ "$c" = ficus-postgres ]; then stop_postgres; fi
	return "$rc"
}

# run_rounds SCN KIND runs BENCH_ROUNDS rounds of scenario SCN, KIND wrk
# (the saturating run) or half (the constant-rate run). In each round every
# contender that started before gets a fresh process (see fresh) and one
# measured run, in run order: a spell of noise on the machine then falls
# on every contender alike, not on the rounds of one. Each run's figures
# are appended to $work/wrk-C-SCN or $work/half-C-SCN.
run_rounds() {
	local scn="$1" kind="$2" round c tag line
	for ((round = 1; round <= rounds; round++)); do
		say "== $scn, $([ "$kind" = wrk ] && echo "saturating, ${duration} with $conns connections" || echo "half load, ${half_rate[$scn]} req/s for ${duration}"): round $round of $rounds"
		wait_quiet
		for c in "${run_order[@]}"; do
			[ -z "${notes[$c]:-}" ] || continue # it did not start before
			tag="$c-$scn-$round"
			[ "$kind" = wrk ] || tag="$c-$scn-half-$round"
			if ! accounted fresh "$c" "$scn" "$kind" "$tag" && [ "$start_failed" = 1 ]; then
				notes[$c]="$note"
				say "$c: $note"
				continue
			fi
			if [ "$kind" = wrk ]; then
				if ! grep -q 'Requests/sec' "$work/wrk-$tag.txt" 2>/dev/null; then
					say "$c $scn: wrk failed:"
					sed 's/^/    /' "$work/wrk-$tag.txt" >&2 || true
					continue
				fi
				echo "$(parse_wrk "$work/wrk-$tag.txt") $other" >>"$work/wrk-$c-$scn"
				say "$c $scn: $(cut -d' ' -f1 <<<"$(parse_wrk "$work/wrk-$tag.txt")") req/s"
				continue
			fi
			line="$(tail -n 1 "$work/loadgen-$tag.out" 2>/dev/null || true)"
			if [ -z "$line" ]; then
				say "$c $scn: loadgen failed: $(cat "$work/loadgen-$tag.err")"
				continue
			fi
			if [ -s "$work/loadgen-$tag.err" ]; then
				say "$c $scn: $(cat "$work/loadgen-$tag.err")"
			fi
			echo "$(field p99_ms "$line") $other $round $line" >>"$work/half-$c-$scn"
			say "$c $scn half load: p99 $(field p99_ms "$line") ms"
		done
	done
}

# median_line FILE prints the line of FILE with the median first field.
median_line() { sort -g "$1" | sed -n "$((($(wc -l <"$1") + 1) / 2))p"; }

# summarize_wrk SCN takes, for each contender, the saturating round with
# the median rate; bare's sets the half-load rate.
summarize_wrk() {
	local scn="$1" c r a b e o
	for c in "${run_order[@]}"; do
		[ -s "$work/wrk-$c-$scn" ] || continue
		read -r r a b _ e o < <(median_line "$work/wrk-$c-$scn")
		rps[$c.$scn]="$r" p50[$c.$scn]="$a" p99[$c.$scn]="$b" errs[$c.$scn]="$e" other_at[$c.$scn]="$o"
		say "$c $scn: ${rps[$c.$scn]} req/s, p50 ${p50[$c.$scn]} ms, p99 ${p99[$c.$scn]} ms, ${errs[$c.$scn]} errors (other work: $o% of the CPUs)"
	done
	if [ -n "${rps[bare.$scn]:-}" ] && [ "${rps[bare.$scn]}" != - ]; then
		half_rate[$scn]="$(awk -v r="${rps[bare.$scn]}" 'BEGIN { printf "%d", r / 2 }')"
	fi
}

# summarize_half SCN takes, for each contender, the half-load round with
# the median p99, and its added p99: the median over the rounds of its p99
# less direct's in the same round.
summarize_half() {
	local scn="$1" c a b other line
	for c in "${run_order[@]}"; do
		[ -s "$work/half-$c-$scn" ] || continue
		read -r _ other _ line < <(median_line "$work/half-$c-$scn")
		hl_other[$c.$scn]="$other"
		hl_achieved[$c.$scn]="$(field achieved "$line")"
		hl_p50[$c.$scn]="$(field p50_ms "$line")"
		hl_p99[$c.$scn]="$(field p99_ms "$line")"
		hl_p999[$c.$scn]="$(field p999_ms "$line")"
		a="$(field non2xx "$line")" b="$(field errors "$line")"
		hl_errs[$c.$scn]=$((${a:-0} + ${b:-0}))
		if [ "$c" != direct ] && [ -s "$work/half-direct-$scn" ]; then
			# Each round's difference, in round order, then their median.
			hl_rounds[$c.$scn]="$(awk 'NR == FNR { d[$3] = $1; next } ($3 in d) { printf "%s%+.2f", (n++ ? " " : ""), $1 - d[$3] }' \
				"$work/half-direct-$scn" "$work/half-$c-$scn")"
			hl_added[$c.$scn]="$(tr ' ' '\n' <<<"${hl_rounds[$c.$scn]}" | sort -g |
				awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')"
		fi
		say "$c $scn half load: p50 ${hl_p50[$c.$scn]} ms, p99 ${hl_p99[$c.$scn]} ms, added p99 ${hl_added[$c.$scn]:-n/a} ms (other work: $other% of the CPUs)"
	done
}

# The bare ReverseProxy runs first in each round: its saturated rate sets
# the half-load rate of everyone else.
run_order=()
[[ " $contenders " == *" bare "* ]] && run_order+=(bare)
for c in $contenders; do [ "$c" = bare ] || run_order+=("$c"); done
for c in "${run_order[@]}"; do : >"$work/$c.counters.raw"; done
for scn in $scenarios; do
	run_rounds "$scn" wrk
	summarize_wrk "$scn"
	[ -n "${half_rate[$scn]:-}" ] || continue
	run_rounds "$scn" half
	summarize_half "$scn"
done
for c in "${run_order[@]}"; do
	awk '{ n[$1] += $NF } END { for (m in n) if (n[m] != 0) print m, n[m] }' "$work/$c.counters.raw" |
		sort >"$work/$c.counters" || true
done

# ------------------------------------------------------------------ report

fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'; }
fmt_int() { awk -v a="$1" 'BEGIN { printf "%d", a + 0.5 }'; }
fmt_ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a }'; }
behind() { awk -v a="$1" -v r="$2" 'BEGIN { if (a < 0.95 * r) printf " (fell behind)" }'; }
fmt_added() { awk -v a="$1" 'BEGIN { if (a == "") print "-"; else printf "%+.2f ms", a }'; }

scenario_title() {
	case "$1" in
	get) echo "GET $get_path (200-byte JSON answer)" ;;
	post) echo "POST $post_path, a unique Idempotency-Key per request (bench/post-idempotent.lua)" ;;
	esac
}

report() {
	local scn c r
	echo "# ficus proxy benchmark"
	echo
	echo "- when: $(date -u '+%Y-%m-%d %H:%M UTC'), ficus $(git describe --tags --always --dirty 2>/dev/null || echo dev)"
	echo "- machine: $ncpu CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory"
	echo "- placement: $pin_note; contenders run one at a time, in rounds that each run every contender once"
	echo "- CPUs busy with other work, sampled for 2s before / after the run: ${busy_before}% / ${busy_after}% (above a few percent, the figures are noisy)"
	echo "- load: wrk -t1 -c$conns, ${warmup} warm-up then ${duration} measured ($rounds round(s), the median run reported); half load: bench/loadgen at a constant rate, $conns connections, ${duration} (the run with the median p99; added p99: the median over the rounds of the contender's p99 less direct's in the same round)"
	echo "- tools: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), $("$haproxy_bin" -v 2>&1 | head -n 1 | cut -d' ' -f1-3), $("$GO" version | cut -d' ' -f3)"
	[ -n "${pg_source:-}" ] && echo "- Postgres for ficus-postgres: $pg_source$([ "${BENCH_PG_DURABLE:-0}" = 1 ] || echo ', fsync and synchronous_commit off')"
	[ -n "$previous_ficus" ] && echo "- ficus-previous: ficus built from $previous_rev (BENCH_PREVIOUS), run with that build's defaults"
	for scn in $scenarios; do
		echo
		echo "## $(scenario_title "$scn")"
		echo
		echo "| contender | req/s | p50 | p99 | errors | vs bare ReverseProxy | vs nginx | other work |"
		echo "|---|--:|--:|--:|--:|--:|--:|--:|"
		for c in $contenders; do
			r="${rps[$c.$scn]:-}"
			if [ -z "$r" ] || [ "$r" = - ]; then
				echo "| $c | ${notes[$c]:-n/a (no result)} | | | | | | |"
				continue
			fi
			echo "| $c | $(fmt_int "$r") | $(fmt_ms "${p50[$c.$scn]}") | $(fmt_ms "${p99[$c.$scn]}") | ${errs[$c.$scn]} |" \
				"$(fmt_ratio "$r" "${rps[bare.$scn]:-}") | $(fmt_ratio "$r" "${rps[nginx.$scn]:-}") | ${other_at[$c.$scn]}% |"
		done
		echo
		if [ -z "${half_rate[$scn]:-}" ]; then
			echo "Half load: n/a (no saturated rate for the bare ReverseProxy)."
			continue
		fi
		echo "Half load: ${half_rate[$scn]} req/s (half of bare ReverseProxy's saturated rate), latency from the intended send time."
		echo
		echo "| contender | achieved req/s | p50 | p99 | p99.9 | errors | added p99 vs direct | each round | other work |"
		echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
		for c in $contenders; do
			if [ -z "${hl_p99[$c.$scn]:-}" ]; then
				echo "| $c | ${notes[$c]:-n/a (no result)} | | | | | | | |"
				continue
			fi
			echo "| $c | $(fmt_int "${hl_achieved[$c.$scn]}")$(behind "${hl_achieved[$c.$scn]}" "${half_rate[$scn]}") | $(fmt_ms "${hl_p50[$c.$scn]}") | $(fmt_ms "${hl_p99[$c.$scn]}") |" \
				"$(fmt_ms "${hl_p999[$c.$scn]}") | ${hl_errs[$c.$scn]} | $(fmt_added "${hl_added[$c.$scn]:-}") | ${hl_rounds[$c.$scn]:--} | ${hl_other[$c.$scn]}% |"
		done
	done
	for c in $contenders; do
		[ -s "$work/$c.counters" ] || continue
		echo
		echo "## $c: its own counters after the runs"
		echo
		echo "Requests by route, lane and code; idempotency outcomes; rate-limit rejections, shedding and breaker transitions (a counter not shown is zero). The smoke and warm-up requests are included."
		echo
		echo '```'
		cat "$work/$c.counters"
		echo '```'
	done
}

busy_after="$(busy_percent)"
mkdir -p "$(dirname "$out")"
report >"$work/report.md"
cp "$work/report.md" "$out"
echo
cat "$work/report.md"
say "written to $out"
