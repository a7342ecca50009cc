#!/usr/bin/env bash
# bench/cdc.sh: the CDC benchmark behind "make bench". One run, on
# 127.0.0.1 only, against one PostgreSQL, of the same workloads drained by:
#
#   pg_recvlogical   PostgreSQL's own client, pgoutput, to /dev/null: the
#                    physical limit of the server and the wire
#   bare             a bare pglogrepl loop that counts rows and acknowledges,
#                    nothing else (bench/cdcbench drain)
#   ficus-null       ficus cdc run --sink null:
#   ficus-jsonl      ficus cdc run --sink jsonl:FILE, a file on disk (fsync)
#   ficus-nats       ficus cdc run --sink nats://..., JetStream on an embedded
#                    nats-server (bench/cdcbench nats)
#
# Workloads: "big", one transaction of each of BENCH_CDC_BIG_ROWS rows,
# drained streamed and not streamed (BENCH_CDC_STREAMING); "small",
# BENCH_CDC_ROWS one-row transactions. For each: a template slot is created,
# the workload committed once and its end LSN recorded; then every contender,
# one at a time, drains its own copy of the template slot (same start, same
# changes, same plugin options as ficus) until it has consumed every row, and
# rows/s = rows / time from its start, and its peak resident memory (RSS).
# Then the commit-to-CRM latency: ficus
# cdc run into a webhook receiver while a writer commits one-row transactions
# at BENCH_CDC_RATE per second. The table goes to stdout and to
# bench/results/cdc.md. See bench/README.md.
#
# Environment (defaults in brackets):
#   BENCH_CDC_ROWS       rows of the small workload [200000]
#   BENCH_CDC_BIG_ROWS   rows of the big workload's transaction, one run
#                        each ["500000 5000000"]
#   BENCH_CDC_STREAMING  how contenders drain the big workload: "streamed"
#                        (their walsender's logical_decoding_work_mem is
#                        BENCH_CDC_STREAMED_WORK_MEM [64MB, the server's
#                        default], so a transaction larger than that comes
#                        streamed, before its commit), "unstreamed"
#                        (BENCH_CDC_UNSTREAMED_WORK_MEM [8GB]: sent after its
#                        commit; the server holds it in memory meanwhile),
#                        or both ["streamed unstreamed"]
#   BENCH_CDC_WORKLOADS  "big", "small" or both ["big small"]
#   BENCH_CDC_CONTENDERS which contenders, in table order [all five above]
#   BENCH_CDC_ROUNDS     drains per contender and workload; the median rate
#                        of those other work left alone is reported [1]
#   BENCH_CDC_TIMEOUT    seconds one drain may take before it counts as
#                        failed [300, and at least 1 per 2000 rows]
#   BENCH_CDC_RATE       commits per second of the latency run [1000]
#   BENCH_CDC_LATENCY_DURATION  how long the latency run writes [20s]
#   BENCH_CDC_LATENCY_WARMUP    its first part, not measured [2s]
#   BENCH_CDC_LATENCY    0 skips the latency run [1]
#   BENCH_CDC_OUT        where the table is written [bench/results/cdc.md]
#   BENCH_PIN, BENCH_CPU_PROXY, BENCH_CPU_UPSTREAM, BENCH_CPU_LOAD
#                        as in bench/run.sh: the contender on CPU 1,
#                        Postgres, NATS and the harness on CPU 0 [1, 1, 0, 0]
#   BENCH_QUIET_WAIT     seconds to wait, before each drain, for other work
#                        to use at most 10% of the CPUs [60]
#   BENCH_MAX_OTHER      a drain (or the latency run) during which other
#                        processes used more than this percentage of the
#                        CPUs is run again [10]
#   BENCH_RETRIES        how many times at most [2]
#   BENCH_FICUS          a prebuilt ficus binary [build ./cmd/ficus]
#   BENCH_DATABASE_URL   a PostgreSQL with wal_level=logical, as a superuser
#                        [throwaway local cluster, else a container of
#                        FICUS_POSTGRES_IMAGE; FICUS_POSTGRES_PROVIDER=docker
#                        prefers the container]
#   BENCH_PG_DURABLE     1 keeps Postgres's fsync on [0]
#   BENCH_KEEP_WORK      1 keeps the temporary directory (logs, files) [0]
#   GO                   the go command [go]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'bench cdc: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

next_port=19080 # the first port free_port tries
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

# ---------------------------------------------------------------- settings

rows="${BENCH_CDC_ROWS:-200000}"
small_rows="$rows"
big_rows="${BENCH_CDC_BIG_ROWS:-500000 5000000}"
streaming="${BENCH_CDC_STREAMING:-streamed unstreamed}"
streamed_mem="${BENCH_CDC_STREAMED_WORK_MEM:-64MB}"
unstreamed_mem="${BENCH_CDC_UNSTREAMED_WORK_MEM:-8GB}"
workloads="${BENCH_CDC_WORKLOADS:-big small}"
contenders="${BENCH_CDC_CONTENDERS:-pg_recvlogical bare ficus-null ficus-jsonl ficus-nats}"
rounds="${BENCH_CDC_ROUNDS:-1}"
drain_timeout="${BENCH_CDC_TIMEOUT:-300}"
rate="${BENCH_CDC_RATE:-1000}"
lat_duration="${BENCH_CDC_LATENCY_DURATION:-20s}"
lat_warmup="${BENCH_CDC_LATENCY_WARMUP:-2s}"
do_latency="${BENCH_CDC_LATENCY:-1}"
out="${BENCH_CDC_OUT:-bench/results/cdc.md}"
GO="${GO:-go}"

for n in $rows $big_rows; do
	if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 10000000 ]; then
		die "BENCH_CDC_ROWS=$rows BENCH_CDC_BIG_ROWS=$big_rows: want numbers of rows from 1 to 10000000"
	fi
done
for m in $streaming; do
	[[ "$m" == streamed || "$m" == unstreamed ]] || die "BENCH_CDC_STREAMING: unknown mode '$m' (want streamed and/or unstreamed)"
done
for knob in streamed_mem unstreamed_mem; do
	[[ "${!knob}" =~ ^[1-9][0-9]*(kB|MB|GB)$ ]] || die "${knob}=${!knob}: want a size such as 64MB"
done
for w in $workloads; do
	[[ "$w" == big || "$w" == small ]] || die "BENCH_CDC_WORKLOADS: unknown workload '$w' (want big and/or small)"
done
for c in $contenders; do
	case "$c" in
	pg_recvlogical | bare | ficus-null | ficus-jsonl | ficus-nats) ;;
	*) die "BENCH_CDC_CONTENDERS: unknown contender '$c' (want pg_recvlogical bare ficus-null ficus-jsonl ficus-nats)" ;;
	esac
done
[[ "$rounds" =~ ^[1-9]$ ]] || die "BENCH_CDC_ROUNDS=$rounds: want 1 to 9 drains per contender and workload"
[[ "$drain_timeout" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CDC_TIMEOUT=$drain_timeout: want a number of seconds"
if ! [[ "$rate" =~ ^[1-9][0-9]*$ ]] || [ "$rate" -gt 100000 ]; then
	die "BENCH_CDC_RATE=$rate: want commits per second from 1 to 100000"
fi
for knob in lat_duration lat_warmup; do
	[[ "${!knob}" =~ ^[0-9]+s$ ]] || die "${knob}=${!knob}: want whole seconds such as 20s"
done
lat_s="${lat_duration%s}"
[ "${lat_warmup%s}" -lt "$lat_s" ] || die "BENCH_CDC_LATENCY_WARMUP=$lat_warmup must be shorter than BENCH_CDC_LATENCY_DURATION=$lat_duration"

# Pinning and the shared settings: see bench_settings in bench/lib.sh.
# Postgres (its walsender decodes for every contender alike), the NATS
# server and the harness share CPU 0.
bench_settings
[ -n "$pin_note" ] || pin_note="contender on CPU $cpu_proxy; Postgres and the NATS server on CPU $cpu_upstream; harness (workload, metrics polling, webhook receiver) on CPU $cpu_load"

# --------------------------------------------------------------- processes

work="$(mktemp -d /tmp/ficus-bench-cdc.XXXXXX)"
chmod 755 "$work"
pids=() # every process started, for the EXIT trap
container=""
pg_url=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "${#pids[@]}" -gt 0 ]; then stop_pids "${pids[@]}"; fi
	if [ -n "$pg_url" ] && [ -x "$work/bin/cdcbench" ] && [ -n "${BENCH_DATABASE_URL:-}" ]; then
		# A server this script did not start keeps running: leave no slot
		# behind to hold its WAL.
		timeout 30 "$work/bin/cdcbench" slots -db "$pg_url" -drop-prefix ficus_bench_ >/dev/null 2>&1 ||
			say "could not drop the benchmark's slots (ficus_bench_*): drop them by hand"
	fi
	if [ -n "$pg_pid" ]; then
		kill -INT "$pg_pid" 2>/dev/null || true # fast shutdown
		stop_pids "$pg_pid"
	fi
	if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
	if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
pg_pid=""
trap cleanup EXIT
trap 'exit 130' INT TERM

# forget PID drops PID from the EXIT trap's list once it is stopped.
forget() {
	local p kept=()
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
	pids=("${kept[@]}")
}

log_tail() { tail -n "${2:-15}" "$work/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true; }

# field NAME LINE prints the value of NAME=value in a cdcbench result line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -n 1; }

now_ns() { date +%s%N; }

# ------------------------------------------------------------------ builds

say "building bench/cdcbench"
mkdir -p "$work/bin"
CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/" ./bench/cdcbench || die "building bench/cdcbench failed"
cdcbench="$work/bin/cdcbench"

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
if [ -n "$ficus" ] && ! "$ficus" cdc run --help 2>/dev/null | grep -q -- '--sink'; then
	ficus_note="n/a (this ficus has no 'cdc run')"
	say "this ficus has no 'cdc run' command: its contenders are n/a"
fi

# --------------------------------------------------------------- postgres

pg_source=""
# start_postgres sets pg_url, or dies when no Postgres can be had.
start_postgres() {
	if [ -n "${BENCH_DATABASE_URL:-}" ]; then
		pg_url="$BENCH_DATABASE_URL" pg_source="BENCH_DATABASE_URL"
		return 0
	fi
	local bin port settings=(-c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32
		-c max_connections=100)
	bin="$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)"
	free_port port
	if [ "${BENCH_PG_DURABLE:-0}" != 1 ]; then
		settings+=(-c fsync=off -c full_page_writes=off)
	fi
	if [ "${FICUS_POSTGRES_PROVIDER:-}" = docker ]; then
		bin=""
	fi
	if [ -n "$bin" ] && [ -x "$bin/initdb" ]; then
		local as=()
		mkdir -p "$work/pg"
		if [ "$(id -u)" -eq 0 ]; then
			id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user for a local cluster"
			chown postgres: "$work/pg"
			as=(setpriv --reuid=postgres --regid="$(id -g postgres)" --clear-groups --)
		fi
		"${as[@]}" "$bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
			>"$work/initdb.log" 2>&1 || {
			log_tail initdb
			die "initdb failed"
		}
		spawn postgres "$cpu_upstream" "${as[@]}" "$bin/postgres" -D "$work/pg/data" -k "$work/pg" -p "$port" \
			-c listen_addresses=127.0.0.1 "${settings[@]}"
		pg_pid="$spawned"
		forget "$pg_pid" # stopped last, by cleanup
		pg_source="local cluster ($bin)"
	elif [ -n "${FICUS_POSTGRES_IMAGE:-}" ] && timeout 10 docker info >/dev/null 2>&1; then
		container="ficus-bench-cdc-pg-$$"
		local cpuset=()
		[ -n "$cpu_upstream" ] && cpuset=(--cpuset-cpus "$cpu_upstream")
		docker run -d --rm --name "$container" "${cpuset[@]}" -p "127.0.0.1:$port:5432" \
			-e POSTGRES_PASSWORD=ficus -e POSTGRES_INITDB_ARGS=--no-sync \
			"$FICUS_POSTGRES_IMAGE" postgres "${settings[@]}" >/dev/null || {
			container=""
			die "docker run $FICUS_POSTGRES_IMAGE failed"
		}
		pg_source="container $FICUS_POSTGRES_IMAGE"
	else
		die "no Postgres: install postgresql, or start Docker with FICUS_POSTGRES_IMAGE set, or set BENCH_DATABASE_URL"
	fi
	local password=""
	[ -n "$container" ] && password=":ficus"
	pg_url="postgres://postgres${password}@127.0.0.1:$port/postgres?sslmode=disable"
	local i
	for ((i = 0; i < 300; i++)); do
		if "$cdcbench" slots -db "$pg_url" >/dev/null 2>&1; then return 0; fi
		if [ -n "$pg_pid" ] && ! kill -0 "$pg_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	log_tail postgres
	die "Postgres did not come up"
}
start_postgres
say "Postgres: $pg_source"
prep="$(on "$cpu_load" "$cdcbench" prepare -db "$pg_url")" || die "cdcbench prepare failed"
server_version="$(field server_version "$prep")"
server_major="${server_version%%.*}"
publication="$(field publication "$prep")"
plugin_options=()
IFS=, read -r -a opts <<<"$(field plugin_options "$prep")"
for o in "${opts[@]}"; do plugin_options+=(-o "$o"); done

# ---------------------------------------------------------- pg_recvlogical

# find_recvlogical sets recvlogical (a command prefix), recv_url (how it
# reaches the server) and recv_note: the client of the server's major
# version when there is one, else any, else one installed from Debian's
# packages, else the one inside the container.
recvlogical=() recv_note="" recv_url="$pg_url"
find_recvlogical() {
	local b="/usr/lib/postgresql/$server_major/bin/pg_recvlogical"
	if [ ! -x "$b" ] && ! command -v pg_recvlogical >/dev/null; then
		apt_install "postgresql-client-$server_major" >/dev/null 2>&1 || apt_install postgresql-client ||
			say "could not install postgresql-client"
	fi
	if [ -x "$b" ]; then
		recvlogical=("$b")
	elif command -v pg_recvlogical >/dev/null; then
		recvlogical=("$(command -v pg_recvlogical)")
	elif [ -n "$container" ]; then
		recvlogical=(docker exec "$container" pg_recvlogical)
		recv_url="postgres://postgres:ficus@127.0.0.1:5432/postgres?sslmode=disable"
		recv_note="inside the Postgres container (docker exec), sharing its CPUs"
	else
		return 1
	fi
	local v
	v="$("${recvlogical[@]}" --version 2>/dev/null | awk '{ print $3 }')"
	[ -n "$recv_note" ] || recv_note="${recvlogical[0]} on the host"
	recv_note="pg_recvlogical $v, $recv_note"
	[ "${v%%.*}" = "$server_major" ] || recv_note+=" (the server is $server_version)"
}
if [[ " $contenders " == *" pg_recvlogical "* ]]; then
	find_recvlogical || say "pg_recvlogical is missing and could not be installed: its rows are n/a (Debian: apt-get install postgresql-client)"
fi

# --------------------------------------------------------------------- nats

nats_url="" nats_port=""
if [[ " $contenders " == *" ficus-nats "* ]] && [ -z "$ficus_note" ]; then
	free_port nats_port
	mkdir -p "$work/nats"
	spawn nats "$cpu_upstream" "$cdcbench" nats -listen "127.0.0.1:$nats_port" -dir "$work/nats"
	for ((i = 0; i < 100; i++)); do
		nats_url="$(field url "$(cat "$work/nats.log")")"
		[ -n "$nats_url" ] && break
		kill -0 "$spawned" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$nats_url" ] || {
		log_tail nats
		say "the NATS server did not start: ficus-nats is n/a"
	}
fi

# -------------------------------------------------------------- contenders

# mode is how the current run drains: streamed, unstreamed, or "" (the
# server's setting).
mode=""
# with_work_mem URL adds the logical_decoding_work_mem of the current mode
# to a connection URL (as libpq's "options", which pgx passes on too).
with_work_mem() {
	local mem=""
	case "$mode" in
	streamed) mem="$streamed_mem" ;;
	unstreamed) mem="$unstreamed_mem" ;;
	*)
		echo "$1"
		return
		;;
	esac
	local sep='?'
	[[ "$1" == *\?* ]] && sep='&'
	echo "$1${sep}options=-c%20logical_decoding_work_mem%3D$mem"
}
# run_timeout prints the seconds a drain of $rows rows may take.
run_timeout() { echo $((drain_timeout > rows / 2000 ? drain_timeout : rows / 2000)); }

# Each drain_CONTENDER SLOT WORKLOAD TAG drains SLOT up to the workload's
# end and sets $elapsed_ns, or returns non-zero with $note set.

drain_pg_recvlogical() {
	local slot="$1" t0 t1
	if [ "${#recvlogical[@]}" = 0 ]; then
		note="n/a (no pg_recvlogical)"
		return 1
	fi
	local rss=("$cdcbench" rss -out "$work/$3.rss" --)
	# Inside the container, the peak would be docker exec's.
	[ "${recvlogical[0]}" = docker ] && rss=()
	t0="$(now_ns)"
	if ! on "$cpu_proxy" timeout -k 5 "$(run_timeout)" "${rss[@]}" "${recvlogical[@]}" -d "$(with_work_mem "$recv_url")" \
		-S "$slot" --start --endpos "$end_lsn" --no-loop -f /dev/null "${plugin_options[@]}" >"$work/$3.log" 2>&1; then
		log_tail "$3"
		note="failed (see the log above)"
		return 1
	fi
	t1="$(now_ns)"
	elapsed_ns=$((t1 - t0))
	rss_kb="$(field peak_rss_kb "$(cat "$work/$3.rss" 2>/dev/null)")"
}

drain_bare() {
	local slot="$1" t0 t1
	t0="$(now_ns)"
	if ! on "$cpu_proxy" "$cdcbench" rss -out "$work/$3.rss" -- "$cdcbench" drain -db "$(with_work_mem "$pg_url")" \
		-slot "$slot" -publication "$publication" -rows "$rows" -timeout "$(run_timeout)s" >"$work/$3.log" 2>&1; then
		log_tail "$3"
		note="failed (see the log above)"
		return 1
	fi
	t1="$(now_ns)"
	elapsed_ns=$((t1 - t0))
	rss_kb="$(field peak_rss_kb "$(cat "$work/$3.rss" 2>/dev/null)")"
}

# drain_ficus SINK SLOT WORKLOAD TAG runs ficus cdc run into SINK until its
# metrics count every row delivered.
drain_ficus() {
	local sink="$1" slot="$2" tag="$4" mport t0 line pid rc=0
	if [ -n "$ficus_note" ]; then
		note="$ficus_note"
		return 1
	fi
	free_port mport
	t0="$(now_ns)"
	spawn "$tag" "$cpu_proxy" env -u FICUS_DATABASE_URL "$ficus" cdc run --database-url "$(with_work_mem "$pg_url")" \
		--slot "$slot" --publication "$publication" --sink "$sink" --heartbeat=-1s \
		--metrics-listen "127.0.0.1:$mport"
	pid="$spawned"
	line="$(on "$cpu_load" "$cdcbench" await -metrics "http://127.0.0.1:$mport/metrics" -rows "$rows" \
		-pid "$pid" -timeout "$(run_timeout)s" 2>"$work/$tag-await.err")" || rc=$?
	stop_pids "$pid"
	forget "$pid"
	if [ "$rc" -ne 0 ]; then
		sed 's/^/    /' "$work/$tag-await.err" >&2
		log_tail "$tag"
		note="failed (see the log above)"
		return 1
	fi
	elapsed_ns=$(($(field done_ns "$line") - t0))
	rss_kb="$(field peak_rss_kb "$line")"
	streamed_txs="$(field streamed "$line")"
}

drain_ficus-null() { drain_ficus null: "$@"; }

drain_ficus-jsonl() {
	local f="$work/$3.jsonl" lines
	rm -f "$f"
	drain_ficus "jsonl://$f" "$@" || return 1
	lines="$(wc -l <"$f")"
	rm -f "$f"
	if [ "$lines" -lt "$rows" ]; then
		note="failed: the file holds $lines lines, want $rows"
		return 1
	fi
}

drain_ficus-nats() {
	if [ -z "$nats_url" ]; then
		note="n/a (no NATS server)"
		return 1
	fi
	# A new subject prefix, so a new stream, for every drain: a stream that
	# already holds the event ids would only count duplicates.
	nats_seq=$((nats_seq + 1))
	drain_ficus "$nats_url/cdcbench.${3//-/_}_$nats_seq" "$@"
}
nats_seq=0

# ------------------------------------------------------------- measuring

declare -A rate_of other_of rss_of notes
slot_of() { printf 'ficus_bench_run_%s' "${1//-/_}"; }

# drain_once CONTENDER SLOT WORKLOAD TAG copies the template slot to SLOT
# and lets the contender drain it.
drain_once() {
	on "$cpu_load" "$cdcbench" slots -db "$pg_url" -from "$template" -create "$2" >/dev/null || {
		note="failed: could not copy the template slot"
		return 1
	}
	"drain_$1" "$2" "$3" "$4"
}

# measure_round RUN ROUND: every contender drains its copy of the
# template slot once. RUN names the workload, its rows and the mode.
measure_round() {
	local w="$1" round="$2" c slot tag r
	for c in $contenders; do
		[ -n "${notes[$c.$w]:-}" ] && continue # it failed or is n/a: no point in another round
		slot="$(slot_of "$c")"
		tag="$c-$w-$round"
		wait_quiet
		say "$w, round $round: $c"
		note="" rss_kb="" streamed_txs=""
		if ! accounted drain_once "$c" "$slot" "$w" "$tag"; then
			notes[$c.$w]="${note:-failed}"
			say "$c: ${notes[$c.$w]}"
			continue
		fi
		on "$cpu_load" "$cdcbench" slots -db "$pg_url" -drop "$slot" >/dev/null || true
		r="$(awk -v n="$rows" -v ns="$elapsed_ns" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')"
		echo "$r $other ${rss_kb:--}" >>"$work/rounds-$c-$w"
		[ -n "$streamed_txs" ] && streamed_of[$w]="$streamed_txs"
		say "$c: $rows rows in $(awk -v ns="$elapsed_ns" 'BEGIN { printf "%.3f", ns / 1e9 }')s = $r rows/s, peak RSS ${rss_kb:-?} KiB (other work: $other% of the CPUs)"
	done
}
declare -A streamed_of

# runs lists every measured run as KIND-ROWS-MODE: the big workload once
# per row count and mode, the small one once.
declare -A workload_note
runs=()
for w in $workloads; do
	if [ "$w" = big ]; then
		for n in $big_rows; do
			for m in $streaming; do runs+=("big-$n-$m"); done
		done
	else
		runs+=("small-$small_rows-default")
	fi
done
committed=""
for run in "${runs[@]}"; do
	IFS=- read -r kind rows mode <<<"$run"
	[ "$mode" = default ] && mode=""
	template="ficus_bench_tpl_${kind}_$rows"
	if [ "$committed" != "$kind-$rows" ]; then
		# A new workload; the drains of its other mode reuse it.
		on "$cpu_load" "$cdcbench" slots -db "$pg_url" -drop-prefix ficus_bench_ -create "$template" >/dev/null ||
			die "creating the template slot failed"
		say "$kind workload: committing $rows rows"
		line="$(on "$cpu_load" "$cdcbench" workload -db "$pg_url" -kind "$kind" -rows "$rows")" || die "the $kind workload failed"
		end_lsn="$(field end_lsn "$line")"
		note_line="committed in $(field seconds "$line")s, end LSN $end_lsn"
		committed="$kind-$rows"
		say "$kind workload: $note_line"
	fi
	workload_note[$run]="$note_line"
	for ((round = 1; round <= rounds; round++)); do measure_round "$run" "$round"; done
	for c in $contenders; do
		[ -s "$work/rounds-$c-$run" ] || continue
		# The round with the median rate stands for the contender, among
		# the rounds other work left alone when there are any.
		awk -v m="$max_other" '$2 <= m' "$work/rounds-$c-$run" >"$work/quiet"
		[ -s "$work/quiet" ] || cp "$work/rounds-$c-$run" "$work/quiet"
		read -r "rate_of[$c.$run]" "other_of[$c.$run]" "rss_of[$c.$run]" < <(sort -g "$work/quiet" |
			sed -n "$((($(wc -l <"$work/quiet") + 1) / 2))p")
	done
done
on "$cpu_load" "$cdcbench" slots -db "$pg_url" -drop-prefix ficus_bench_ >/dev/null || true
mode=""

# ---------------------------------------------------------------- latency

lat_line="" lat_note=""
measure_latency() {
	local slot=ficus_bench_latency mport lport sink i lpid fpid
	if [ -n "$ficus_note" ]; then
		lat_note="$ficus_note"
		return 1
	fi
	on "$cpu_load" "$cdcbench" slots -db "$pg_url" -create "$slot" >/dev/null || {
		lat_note="failed: could not create its slot"
		return 1
	}
	wait_quiet
	free_port mport
	free_port lport
	say "latency: $rate one-row transactions/s for $lat_duration into ficus cdc run --sink http://..."
	spawn latency "$cpu_load" "$cdcbench" latency -db "$pg_url" -listen "127.0.0.1:$lport" \
		-ready "http://127.0.0.1:$mport/readyz" -rate "$rate" -duration "$lat_duration" -warmup "$lat_warmup"
	lpid="$spawned"
	for ((i = 0; i < 100; i++)); do
		sink="$(field listening "$(cat "$work/latency.log")")"
		[ -n "$sink" ] && break
		sleep 0.1
	done
	if [ -z "$sink" ]; then
		log_tail latency
		lat_note="failed: the receiver did not start"
		return 1
	fi
	spawn ficus-webhook "$cpu_proxy" env -u FICUS_DATABASE_URL "$ficus" cdc run --database-url "$pg_url" \
		--slot "$slot" --publication "$publication" --sink "$sink" --heartbeat=-1s \
		--metrics-listen "127.0.0.1:$mport"
	fpid="$spawned"
	local rc=0
	wait "$lpid" || rc=$? # it bounds its own waits
	forget "$lpid"
	stop_pids "$fpid"
	forget "$fpid"
	lat_line="$(grep '^rate=' "$work/latency.log" | tail -n 1 || true)"
	if [ "$rc" -ne 0 ] || [ -z "$lat_line" ]; then
		log_tail latency
		log_tail ficus-webhook
		lat_note="failed (see the log above)"
		return 1
	fi
	say "latency: $lat_line"
	on "$cpu_load" "$cdcbench" slots -db "$pg_url" -drop "$slot" >/dev/null || true
}
if [ "$do_latency" = 1 ]; then
	accounted measure_latency || true
	lat_other="$other"
fi

# ------------------------------------------------------------------ report

# fmt_int N prints N rounded, with thousands separated by commas.
fmt_int() {
	awk -v a="$1" 'BEGIN {
		s = sprintf("%d", a + 0.5); r = ""
		while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
		print s r
	}'
}
fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'; }
# goal CONTENDER WORKLOAD RATIO prints whether the ratio meets the goal,
# or that it cannot tell when other work competed with either drain.
goal() {
	local want="" noisy
	case "$1" in
	ficus-null) want=0.8 ;;
	ficus-jsonl) want=0.5 ;;
	esac
	if [ -z "$want" ]; then
		echo ""
		return
	elif [ -z "$3" ]; then
		echo "≥ ${want}×"
		return
	fi
	noisy="$(awk -v a="${other_of[$1.$2]:-0}" -v b="${other_of[pg_recvlogical.$2]:-0}" -v m="$max_other" \
		'BEGIN { print (a > m || b > m) ? 1 : 0 }')"
	awk -v r="$3" -v w="$want" -v n="$noisy" 'BEGIN {
		printf "≥ %.1f×: %s", w, (n ? "unreliable (other work)" : (r >= w ? "met" : "missed"))
	}'
}

# workload_title RUN describes a run of runs.
workload_title() {
	local kind n m
	IFS=- read -r kind n m <<<"$1"
	case "$kind-$m" in
	big-streamed) echo "one $(fmt_int "$n")-row transaction, streamed (logical_decoding_work_mem $streamed_mem)" ;;
	big-unstreamed) echo "one $(fmt_int "$n")-row transaction, not streamed (logical_decoding_work_mem $unstreamed_mem)" ;;
	big-*) echo "one $(fmt_int "$n")-row transaction" ;;
	small-*) echo "$(fmt_int "$n") one-row transactions" ;;
	esac
}
# fmt_rss KIB prints a peak RSS in MiB, or n/a.
fmt_rss() {
	if [[ "$1" =~ ^[0-9]+$ ]]; then
		awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'
	else
		echo "n/a"
	fi
}

report() {
	local w c r base ratio
	echo "# ficus cdc benchmark"
	echo
	echo "- when: $(date -u '+%Y-%m-%d %H:%M UTC'), ficus $(git describe --tags --always --dirty 2>/dev/null || echo dev)"
	echo "- machine: $ncpu CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory"
	echo "- placement: $pin_note; contenders run one at a time"
	echo "- CPUs busy with other work, sampled for 2s before / after the run: ${busy_before}% / ${busy_after}% (above a few percent, the figures are noisy)"
	echo "- PostgreSQL $server_version: $pg_source$([ "${BENCH_PG_DURABLE:-0}" = 1 ] || echo ', fsync off'); every contender streams pgoutput with $(field plugin_options "$prep" | tr ',' ' ')"
	echo "- ${recv_note:-pg_recvlogical: n/a}; $("$GO" version | cut -d' ' -f3)"
	echo "- method: per workload, one template slot before the workload; each contender drains a copy of it from the same start to the end of the workload; rows/s = rows / time from the contender's start (connecting included) until it consumed every row (pg_recvlogical: exits at --endpos; ficus: ficus_cdc_events_total reaches the row count, i.e. the sink acknowledged them); $rounds round(s), the median of those with at most ${max_other}% other work reported"
	echo "- peak RSS: the contender's peak resident memory over its drain (VmHWM of ficus when it has delivered every row; ru_maxrss of pg_recvlogical and the bare loop); the server's own memory is not counted"
	for w in "${runs[@]}"; do
		echo "- $(workload_title "$w"): ${workload_note[$w]}$([ -n "${streamed_of[$w]:-}" ] && echo "; ficus received ${streamed_of[$w]} streamed transaction(s)")"
	done
	echo
	echo "| contender | workload | rows/s | vs pg_recvlogical | goal | vs bare loop | peak RSS | other work |"
	echo "|---|---|--:|--:|---|--:|--:|--:|"
	for w in "${runs[@]}"; do
		base="${rate_of[pg_recvlogical.$w]:-}"
		for c in $contenders; do
			r="${rate_of[$c.$w]:-}"
			if [ -z "$r" ]; then
				echo "| $c | $(workload_title "$w") | ${notes[$c.$w]:-n/a (no result)} | | $(goal "$c" "$w" "") | | | |"
				continue
			fi
			ratio="$(awk -v a="$r" -v b="$base" 'BEGIN { if (b == "" || b + 0 == 0) print ""; else printf "%.4f", a / b }')"
			echo "| $c | $(workload_title "$w") | $(fmt_int "$r") | $(fmt_ratio "$r" "$base") | $(goal "$c" "$w" "$ratio") |" \
				"$(fmt_ratio "$r" "${rate_of[bare.$w]:-}") | $(fmt_rss "${rss_of[$c.$w]:-}") | ${other_of[$c.$w]}% |"
		done
	done
	echo
	if [ "$do_latency" != 1 ]; then
		echo "Commit-to-CRM latency: not measured (BENCH_CDC_LATENCY=0)."
	elif [ -z "$lat_line" ]; then
		echo "Commit-to-CRM latency: ${lat_note:-n/a}."
	else
		local p99
		p99="$(field p99_ms "$lat_line")"
		echo "Commit-to-CRM latency, ficus cdc run --sink http://… (webhook) at $(field rate "$lat_line") one-row transactions/s for $(field duration_s "$lat_line")s (achieved $(field achieved "$lat_line")/s; the first $(field warmup_s "$lat_line")s not measured): p50 $(field p50_ms "$lat_line") ms, p90 $(field p90_ms "$lat_line") ms, **p99 $p99 ms**, max $(field max_ms "$lat_line") ms over $(field measured "$lat_line") events ($(field missing "$lat_line") missing; goal p99 ≤ 100 ms: $(awk -v p="$p99" 'BEGIN { print (p <= 100 ? "met" : "missed") }'); other work ${lat_other}%). Latency = the receiver's clock when the request arrived − the event's time (the transaction's commit time, from PostgreSQL)."
	fi
}

busy_after="$(busy_percent)"
mkdir -p "$(dirname "$out")"
report >"$work/report.md"
cp "$work/report.md" "$out"
echo
cat "$work/report.md"
say "written to $out"
