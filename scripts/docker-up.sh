#!/usr/bin/env bash
# docker-up.sh makes a Docker Engine answer on this machine.
#
# It is idempotent: when `docker info` already works it exits 0 at once.
# Otherwise it installs Debian's docker.io when dockerd is missing, starts
# dockerd directly in the background (no systemd needed), and waits for it.
#
# The daemon flags are chosen by probing the machine:
#   - storage driver: overlay2 when a test overlay mount on the data root
#     works, else fuse-overlayfs when /dev/fuse exists, else vfs; a driver the
#     data root already holds images for is kept;
#   - iptables: used when the nat and filter tables can be read, else
#     --iptables=false (published ports then go through docker-proxy);
#   - --ip=127.0.0.1: a published port without a host address binds to
#     loopback only, so test traffic never leaves the machine.
# Each candidate is checked by running a throwaway container; on failure the
# next, more conservative candidate is tried (iptables off, then vfs).
#
# Environment:
#   FICUS_DOCKERD_TIMEOUT         seconds to wait for each start (default 60)
#   FICUS_DOCKERD_LOG             daemon log file (default /var/log/dockerd.log)
#   FICUS_DOCKER_STORAGE_DRIVER   force a storage driver instead of probing
#   FICUS_DOCKERD_EXTRA_FLAGS     extra flags appended to the dockerd command
set -euo pipefail

timeout_s="${FICUS_DOCKERD_TIMEOUT:-60}"
log_file="${FICUS_DOCKERD_LOG:-/var/log/dockerd.log}"
pid_file=/var/run/docker.pid
data_root=/var/lib/docker
flags_file=/var/run/ficus-dockerd.flags

say() { printf 'docker-up: %s\n' "$*" >&2; }

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && docker_ok; then
	say "docker engine already answers; nothing to do"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	say "docker engine is not running and starting it needs root (run as root or start dockerd yourself)"
	exit 1
fi

# One start at a time: a second caller waits here, then finds the engine up.
exec 9>/var/lock/ficus-docker-up.lock
if ! flock -w $((timeout_s * 4)) 9; then
	say "another docker-up.sh holds /var/lock/ficus-docker-up.lock; giving up"
	exit 1
fi
if docker_ok; then
	say "docker engine answers (started by a concurrent docker-up.sh)"
	exit 0
fi

apt_updated=0
apt_install() {
	if [ "$apt_updated" -eq 0 ]; then
		say "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v dockerd >/dev/null 2>&1; then
	say "dockerd not found; installing Debian's docker.io"
	apt_install docker.io
fi
command -v docker >/dev/null 2>&1 || { say "docker CLI still missing after installing docker.io"; exit 1; }

# log_tail prints the end of the daemon log without gRPC chatter.
log_tail() { grep -v 'module=grpc' "$log_file" 2>/dev/null | tail -n "$1" >&2 || true; }

pid_alive() { [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

# wait_ready waits until `docker info` works, the daemon dies, or the timeout.
wait_ready() {
	local deadline=$((SECONDS + timeout_s))
	while [ "$SECONDS" -lt "$deadline" ]; do
		if docker_ok; then return 0; fi
		if ! pid_alive; then
			say "dockerd exited during start-up"
			return 1
		fi
		sleep 1
	done
	say "dockerd did not answer within ${timeout_s}s"
	return 1
}

# A dockerd from an earlier call may still be starting: wait for it rather
# than starting a second one.
if pid_alive; then
	say "dockerd is already running (pid $(cat "$pid_file")); waiting up to ${timeout_s}s for it"
	if wait_ready; then
		say "docker engine is up"
		exit 0
	fi
	say "the running dockerd does not answer; last lines of $log_file:"
	log_tail 40
	exit 1
fi

# probe_overlay mounts a tiny overlay on the data root's file system.
probe_overlay() {
	local t rc=1
	mkdir -p "$data_root"
	t="$(mktemp -d "$data_root/.overlay-probe.XXXXXX")"
	mkdir -p "$t/lower" "$t/upper" "$t/work" "$t/merged"
	echo probe >"$t/lower/f"
	if mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" "$t/merged" 2>/dev/null; then
		if echo changed >"$t/merged/f" 2>/dev/null && [ "$(cat "$t/lower/f")" = probe ]; then
			rc=0
		fi
		umount "$t/merged" 2>/dev/null || true
	fi
	rm -rf "$t"
	return "$rc"
}

pick_storage_driver() {
	if [ -n "${FICUS_DOCKER_STORAGE_DRIVER:-}" ]; then
		echo "$FICUS_DOCKER_STORAGE_DRIVER"
		return
	fi
	# Keep the driver the data root already holds images for.
	local prior=()
	if [ -d "$data_root/image" ]; then
		mapfile -t prior < <(find "$data_root/image" -mindepth 1 -maxdepth 1 -type d -printf '%f\n')
	fi
	if [ "${#prior[@]}" -eq 1 ]; then
		say "data root already uses storage driver ${prior[0]}; keeping it"
		echo "${prior[0]}"
		return
	fi
	if probe_overlay; then
		echo overlay2
		return
	fi
	say "overlay mounts do not work on $data_root"
	if [ -c /dev/fuse ]; then
		if command -v fuse-overlayfs >/dev/null 2>&1 || apt_install fuse-overlayfs >&2; then
			echo fuse-overlayfs
			return
		fi
	fi
	echo vfs
}

iptables_ok() {
	command -v iptables >/dev/null 2>&1 &&
		iptables -t nat -S >/dev/null 2>&1 &&
		iptables -t filter -S >/dev/null 2>&1
}

# smoke_test runs a throwaway container from a one-file image holding
# docker-init (a static tini shipped with docker.io): this exercises the
# storage driver, runc and the bridge network, with no registry needed.
smoke_test() {
	local tini dir img=ficus/docker-smoke:local rc=0
	tini="$(command -v docker-init || true)"
	if [ -z "$tini" ] || ! docker_ok; then return 1; fi
	dir="$(mktemp -d)"
	cp -L "$tini" "$dir/tini"
	if ! tar -C "$dir" -c . | docker import - "$img" >/dev/null; then
		rc=1
	elif ! timeout 60 docker run --rm -p 127.0.0.1::9 "$img" /tini --version >/dev/null; then
		rc=1
	fi
	docker image rm -f "$img" >/dev/null 2>&1 || true
	rm -rf "$dir"
	return "$rc"
}

stop_dockerd() {
	local pid
	pid_alive || return 0
	pid="$(cat "$pid_file")"
	say "stopping dockerd (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 1
	done
	kill -9 "$pid" 2>/dev/null || true
}

# try_start starts dockerd with the given flags and checks it end to end.
try_start() {
	say "starting: dockerd $* (log: $log_file, pidfile: $pid_file)"
	mkdir -p "$(dirname "$log_file")"
	printf '\n==== %s dockerd %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log_file"
	# A pidfile left by a dockerd that no longer runs (a machine restored
	# from a snapshot, a killed daemon) makes dockerd refuse to start.
	pid_alive || rm -f "$pid_file"
	setsid nohup dockerd "$@" >>"$log_file" 2>&1 </dev/null 9>&- &
	local start=$SECONDS
	# dockerd writes its pidfile itself; until then track the launched pid.
	local launched=$!
	for _ in $(seq 50); do
		[ -s "$pid_file" ] && break
		kill -0 "$launched" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$pid_file" ] || echo "$launched" >"$pid_file"
	if wait_ready && smoke_test; then
		say "docker engine is up after $((SECONDS - start))s"
		printf '%s\n' "$*" >"$flags_file"
		return 0
	fi
	say "this configuration failed; last lines of $log_file:"
	log_tail 25
	stop_dockerd
	return 1
}

driver="$(pick_storage_driver)"
say "storage driver: $driver"
base=(--pidfile="$pid_file" --host=unix:///var/run/docker.sock --ip=127.0.0.1)
extra=()
if [ -n "${FICUS_DOCKERD_EXTRA_FLAGS:-}" ]; then
	read -r -a extra <<<"$FICUS_DOCKERD_EXTRA_FLAGS"
fi

attempts=()
if iptables_ok; then
	say "iptables: usable"
	attempts+=("$driver|")
	attempts+=("$driver|--iptables=false")
else
	say "iptables: not usable here; using --iptables=false"
	attempts+=("$driver|--iptables=false")
fi
if [ "$driver" != vfs ]; then
	attempts+=("vfs|--iptables=false")
fi

for a in "${attempts[@]}"; do
	d="${a%%|*}"
	ipt="${a#*|}"
	args=("${base[@]}" --storage-driver="$d")
	[ -n "$ipt" ] && args+=("$ipt")
	args+=(${extra[@]+"${extra[@]}"})
	if try_start "${args[@]}"; then
		exit 0
	fi
done

say "could not start a working docker engine; see $log_file"
exit 1
