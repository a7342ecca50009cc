# bench/lib.sh: what bench/run.sh and bench/cdc.sh share, sourced by both:
# pinning, measuring how busy the CPUs are and how much of that is the
# script's own work, starting and stopping processes, free ports. The
# script defines say and die first, calls bench_settings, and sets work
# (its temporary directory), pids (every process it started) and,
# optionally, next_port (the first port free_port tries) before it calls
# the rest.

# bench_settings reads the settings both harnesses share and warns when the
# machine is busy already. CPU pinning: on two CPUs everything competes, so
# the harness's load (and the servers it measures against) share CPU 0 and
# the contender under test gets CPU 1 to itself; every contender gets the
# same placement. It sets ncpu, cpu_load, cpu_proxy and cpu_upstream (empty:
# unpinned), pin_note (empty when pinned on two or more CPUs: the script
# says where what runs), quiet_wait (BENCH_QUIET_WAIT, seconds), max_other
# (BENCH_MAX_OTHER, percent), retries (BENCH_RETRIES) and clk_tck.
bench_settings() {
	ncpu="$(nproc)"
	if [ "${BENCH_PIN:-1}" = 0 ] || ! command -v taskset >/dev/null; then
		pin_note="unpinned"
		cpu_load="" cpu_proxy="" cpu_upstream=""
	elif [ "$ncpu" -ge 2 ]; then
		cpu_load="${BENCH_CPU_LOAD:-0}"
		cpu_proxy="${BENCH_CPU_PROXY:-1}"
		cpu_upstream="${BENCH_CPU_UPSTREAM:-0}"
		pin_note=""
	else
		cpu_load=0 cpu_proxy=0 cpu_upstream=0
		pin_note="one CPU: everything on CPU 0"
	fi
	quiet_wait="${BENCH_QUIET_WAIT:-60}"
	[[ "$quiet_wait" =~ ^[0-9]+$ ]] || die "BENCH_QUIET_WAIT=$quiet_wait: want a number of seconds"
	max_other="${BENCH_MAX_OTHER:-10}"
	retries="${BENCH_RETRIES:-2}"
	[[ "$max_other" =~ ^[0-9]+$ ]] || die "BENCH_MAX_OTHER=$max_other: want a percentage of the CPUs"
	[[ "$retries" =~ ^[0-9]$ ]] || die "BENCH_RETRIES=$retries: want 0 to 9 repeats"
	clk_tck="$(getconf CLK_TCK)"
	busy_before="$(busy_percent)"
	if [ "$busy_before" -gt 10 ]; then
		say "warning: the CPUs are ${busy_before}% busy before the run: other work on this machine will make the figures noisy"
	fi
}

# on CPUS CMD... runs CMD pinned to CPUS (or unpinned when CPUS is empty).
on() {
	local cpus="$1"
	shift
	if [ -n "$cpus" ]; then
		taskset -c "$cpus" "$@"
	else
		"$@"
	fi
}

# busy_percent [SECONDS] samples /proc/stat for SECONDS (2) and prints how
# busy the CPUs were, in percent of all of them. Taken while the benchmark
# runs nothing, it is other work that will compete with it for the CPUs.
busy_percent() {
	local a b
	a="$(head -n 1 /proc/stat)"
	sleep "${1:-2}"
	b="$(head -n 1 /proc/stat)"
	awk -v a="$a" -v b="$b" 'BEGIN {
		n = split(a, x); split(b, y)
		for (i = 2; i <= n && i <= 9; i++) { t += y[i] - x[i]; if (i == 5 || i == 6) idle += y[i] - x[i] }
		printf "%d", (t > 0 ? 100 * (t - idle) / t : 0)
	}'
}

wait_quiet() {
	local waited=0 busy
	busy="$(busy_percent 1)"
	while [ "$busy" -gt 10 ] && [ "$waited" -lt "$quiet_wait" ]; do
		[ "$waited" = 0 ] && say "other work keeps the CPUs ${busy}% busy: waiting up to ${quiet_wait}s for it to calm down"
		busy="$(busy_percent 1)"
		waited=$((waited + 1))
	done
}

snapshot() {
	local reaped live
	times >"$work/times"
	reaped="$(awk -v hz="$clk_tck" 'NR == 2 {
		for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] }
		printf "%d", s * hz
	}' "$work/times")"
	# Fields after "(comm) ": 2 ppid, 12 utime, 13 stime, 14 cutime, 15 cstime.
	live="$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v root=$$ '{
		pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
		ppid[pid] = f[2]; cpu[pid] = f[12] + f[13] + f[14] + f[15]
	}
	END {
		ours[root] = 1
		for (changed = 1; changed;) {
			changed = 0
			for (p in ppid) if (!(p in ours) && (ppid[p] in ours)) { ours[p] = 1; changed = 1 }
		}
		for (p in ours) s += cpu[p]
		printf "%d", s
	}')"
	snap_ours=$((reaped + live))
	read -r snap_busy snap_total < <(head -n 1 /proc/stat | awk '{
		for (i = 2; i <= NF && i <= 9; i++) { t += $i; if (i == 5 || i == 6) idle += $i }
		print t - idle, t
	}')
}

accounted() {
	local attempt b0 t0 o0 rc
	for ((attempt = 0; ; attempt++)); do
		snapshot
		b0="$snap_busy" t0="$snap_total" o0="$snap_ours"
		rc=0
		"$@" || rc=$?
		snapshot
		other="$(awk -v b=$((snap_busy - b0)) -v t=$((snap_total - t0)) -v o=$((snap_ours - o0)) \
			'BEGIN { x = t > 0 ? 100 * (b - o) / t : 0; printf "%.1f", (x < 0 ? 0 : x) }')"
		if [ "$rc" -ne 0 ] || awk -v x="$other" -v m="$max_other" 'BEGIN { exit !(x <= m) }' ||
			[ "$attempt" -ge "$retries" ]; then
			return "$rc"
		fi
		say "other work used ${other}% of the CPUs during that run: running it again"
		wait_quiet
	done
}

# stop_pids PID... sends SIGTERM, waits up to 5s, then SIGKILL, and
# forgets the PIDs (the EXIT trap must not signal a process that later got
# the same PID).
stop_pids() {
	local pid i keep=()
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		[[ " $* " == *" $pid "* ]] || keep+=("$pid")
	done
	pids=("${keep[@]}")
}

# spawn NAME CPUS CMD... starts CMD in the background, pinned, with its
# output in $work/NAME.log, and records its pid in $spawned.
spawn() {
	local name="$1" cpus="$2"
	shift 2
	if [ -n "$cpus" ]; then
		taskset -c "$cpus" "$@" >"$work/$name.log" 2>&1 &
	else
		"$@" >"$work/$name.log" 2>&1 &
	fi
	spawned=$!
	pids+=("$spawned")
}

# free_port VAR sets VAR to a TCP port on 127.0.0.1 that nothing listens on
# and that no earlier call handed out (not a command substitution: the
# counter must survive).
next_port="${next_port:-18080}"
free_port() {
	while (echo >"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; do
		next_port=$((next_port + 1))
	done
	printf -v "$1" '%s' "$next_port"
	next_port=$((next_port + 1))
}

apt_updated=0
# apt_install PKG... installs Debian packages when we are root with apt-get;
# returns non-zero otherwise. No service is started by the install.
apt_install() {
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if [ "$apt_updated" = 0 ]; then
		say "apt-get update"
		apt-get update -qq || return 1
		apt_updated=1
	fi
	say "apt-get install $* (Debian packages the benchmark needs)"
	local made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		# Keep the packages from starting system-wide nginx or HAProxy.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
	if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
	return "$rc"
}
