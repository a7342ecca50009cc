#!/usr/bin/env bash
# images.sh builds the container images ficus tests run, with no registry:
#
#   postgres  FICUS_POSTGRES_IMAGE (default ficus/postgres:15): Debian
#             bookworm minbase with postgresql-15 and wal2json, made with
#             debootstrap and `docker import`; entrypoint in images/postgres/.
#             Built only when missing, when its entrypoint changed, or with
#             --force.
#   ficus     FICUS_IMAGE (default ficus/ficus:dev), also tagged with the
#             version (ficus/ficus:VERSION) and ficus/ficus:latest: FROM
#             scratch with the static ./cmd/ficus binary and the build
#             host's CA bundle /etc/ssl/certs/ca-certificates.crt (Debian's
#             ca-certificates), OCI labels with version and revision
#             (images/ficus/Dockerfile). Always rebuilt; it takes seconds.
#   slicer    FICUS_SLICER_IMAGE (default ficus/pricing-worker:dev): the
#             pricing worker with PrusaSlicer, for `ficus pricing worker
#             --calculator slicer`: a Debian bookworm minbase root file
#             system with prusa-slicer (debootstrap, `docker import`, kept
#             as FICUS_SLICER_BASE_IMAGE, default ficus/prusa-slicer:bookworm)
#             and the static ficus binary on top (images/slicer/Dockerfile).
#             The base is rebuilt only when missing, when its inputs
#             (images/slicer/packages) changed, or with --force; the ficus
#             layer always (seconds). Not built by default: name it, or
#             `make images-slicer` (docs/pricing-fleet.md has the timing).
#   toxiproxy FICUS_TOXIPROXY_IMAGE (default ficus/toxiproxy:2.12.0): FROM
#             scratch with toxiproxy's server built from its Go module
#             (github.com/Shopify/toxiproxy/v2, FICUS_TOXIPROXY_VERSION,
#             default v2.12.0) for the end-to-end suite's faults
#             (images/toxiproxy/Dockerfile). Built only when missing.
#   vm        FICUS_VM_IMAGE (default ficus/victoria-metrics:VM_VERSION) and
#             FICUS_VMALERT_IMAGE (default ficus/vmalert:VM_VERSION): FROM
#             scratch with the static victoria-metrics and vmalert binaries
#             scripts/vm-build.sh builds from the pinned module
#             github.com/VictoriaMetrics/VictoriaMetrics@VM_VERSION
#             (images/victoria-metrics/, images/vmalert/; docs/e2e.md). Built
#             only when missing, when their inputs (the version, the Go
#             toolchain, vm-build.sh and the two Dockerfiles) changed, or with
#             --force: minutes with an empty Go build cache, seconds with a
#             warm one.
#
# Usage: scripts/images.sh [--force] [postgres] [ficus] [slicer] [toxiproxy] [vm]
#   With no image named, postgres, ficus, toxiproxy and vm are built. The
#   Docker engine is started with scripts/docker-up.sh when it is not running.
#
# Environment:
#   FICUS_POSTGRES_IMAGE, FICUS_IMAGE, FICUS_SLICER_IMAGE,
#   FICUS_SLICER_BASE_IMAGE, FICUS_TOXIPROXY_IMAGE, FICUS_VM_IMAGE,
#   FICUS_VMALERT_IMAGE  image names (see above)
#   VM_VERSION           VictoriaMetrics version; defaults to the one
#                        dashboards/live pins (VictoriaMetricsVersion)
#   FICUS_IMAGE_ONLY     1: tag the ficus image FICUS_IMAGE only (tests)
#   FICUS_DEBIAN_MIRROR  Debian mirror for debootstrap; defaults to the one
#                        apt uses here, else http://deb.debian.org/debian
#   VERSION              version stamped into ficus; defaults to git describe
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pg_image="${FICUS_POSTGRES_IMAGE:-ficus/postgres:15}"
ficus_image="${FICUS_IMAGE:-ficus/ficus:dev}"
slicer_image="${FICUS_SLICER_IMAGE:-ficus/pricing-worker:dev}"
slicer_base="${FICUS_SLICER_BASE_IMAGE:-ficus/prusa-slicer:bookworm}"
toxiproxy_version="${FICUS_TOXIPROXY_VERSION:-v2.12.0}"
toxiproxy_image="${FICUS_TOXIPROXY_IMAGE:-ficus/toxiproxy:${toxiproxy_version#v}}"
slicer_packages="$root/images/slicer/packages"
slicer_label=dev.ficus.slicer.inputs-sha256
suite=bookworm
pg_major=15
entrypoint_src="$root/images/postgres/docker-entrypoint.sh"
entrypoint_label=dev.ficus.postgres.entrypoint-sha256
vm_version="${VM_VERSION:-$(sed -n 's/^[[:space:]]*VictoriaMetricsVersion[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$root/dashboards/live/live.go")}"
vm_image="${FICUS_VM_IMAGE:-ficus/victoria-metrics:$vm_version}"
vmalert_image="${FICUS_VMALERT_IMAGE:-ficus/vmalert:$vm_version}"
vm_label=dev.ficus.vm.inputs-sha256

say() { printf 'images: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

force=0
targets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--force) force=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	postgres | ficus | slicer | toxiproxy | vm) targets+=("$1") ;;
	*) die "unknown argument '$1' (usage: scripts/images.sh [--force] [postgres] [ficus] [slicer] [toxiproxy] [vm])" ;;
	esac
	shift
done
if [ "${#targets[@]}" -eq 0 ]; then
	targets=(postgres ficus toxiproxy vm)
fi

# step NAME CMD... runs CMD and reports how long it took.
step() {
	local name="$1" t0
	shift
	t0="$(date +%s)"
	say "$name ..."
	"$@"
	say "$name: done in $(($(date +%s) - t0))s"
}

apt_updated=0
apt_install() {
	[ "$(id -u)" -eq 0 ] || die "installing $* needs root"
	if [ "$apt_updated" -eq 0 ]; then
		say "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# docker_build runs docker build, with the classic builder when the buildx
# plugin (BuildKit) is not installed.
docker_build() {
	if docker buildx version >/dev/null 2>&1; then
		docker build "$@"
	else
		DOCKER_BUILDKIT=0 docker build "$@"
	fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# detect_mirror prints the URI apt uses for the main Debian suite: the
# deb822 `URIs:` of the stanza whose Suites holds "bookworm", else a classic
# `deb URI bookworm ...` line, else deb.debian.org.
detect_mirror() {
	local uri="" f
	if [ -n "${FICUS_DEBIAN_MIRROR:-}" ]; then
		echo "$FICUS_DEBIAN_MIRROR"
		return
	fi
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri="$(awk -v suite="$suite" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !done) {
					split(uris, u, " "); print u[1]; done = 1
				}
				types = ""; suites = ""; uris = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "suites") suites = val
				else if (key == "uris") uris = val
			}
			END { flush() }
		' "$f")"
		if [ -n "$uri" ]; then
			echo "$uri"
			return
		fi
	done
	uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -E 's/^[ \t]*//; s/\[[^]]*\][ \t]*//' |
		awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }')"
	echo "${uri:-http://deb.debian.org/debian}"
}

# cleanup_dir unmounts whatever debootstrap left mounted below $1, then
# removes it without crossing into another file system.
cleanup_dir() {
	local dir="$1" m
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	findmnt -rno TARGET 2>/dev/null | awk -v d="$dir/" 'index($0, d) == 1' | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf --one-file-system "$dir"
}

work=""
cleanup() { cleanup_dir "$work"; }
trap cleanup EXIT

# run_debootstrap ROOTFS MIRROR LOG [PACKAGES] makes a minbase root file
# system with PACKAGES (comma-separated; default: PostgreSQL and wal2json).
run_debootstrap() {
	local rootfs="$1" mirror="$2" log="$3" include="${4:-postgresql-$pg_major,postgresql-$pg_major-wal2json}" try
	for try in 1 2; do
		if debootstrap --variant=minbase \
			--include="$include" \
			"$suite" "$rootfs" "$mirror" >"$log" 2>&1; then
			return 0
		fi
		say "debootstrap failed (try $try of 2); last lines of its log:"
		tail -n 30 "$log" >&2
		[ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
		cleanup_dir "$rootfs"
		if [ "$try" -eq 1 ]; then
			say "retrying in 10s"
			sleep 10
		fi
	done
	return 1
}

# shape_rootfs turns the debootstrap tree into the image's file system.
shape_rootfs() {
	local r="$1"

	# Drop the cluster Debian's postinst created; the entrypoint makes one in
	# PGDATA on first start, and later package installs must not make another.
	rm -rf "$r/etc/postgresql/$pg_major" "$r/var/lib/postgresql/$pg_major"
	mkdir -p "$r/etc/postgresql-common"
	echo 'create_main_cluster = false' >>"$r/etc/postgresql-common/createcluster.conf"

	# Listen on all addresses, like the upstream image.
	sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" \
		"$r/usr/share/postgresql/$pg_major/postgresql.conf.sample"
	grep -q "^listen_addresses = '\*'" "$r/usr/share/postgresql/$pg_major/postgresql.conf.sample" ||
		die "could not set listen_addresses in postgresql.conf.sample"

	# en_US.UTF-8, the upstream image's locale, then drop the locale sources.
	chroot "$r" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
	rm -rf "$r/usr/share/i18n"

	# JIT needs LLVM (120 MB with its z3 solver); without it PostgreSQL runs
	# with jit unavailable (pg_jit_available() is false), which tests never
	# notice.
	chroot "$r" dpkg --purge --force-depends libllvm14 libz3-4 >/dev/null 2>&1
	rm -f "$r/usr/lib/postgresql/$pg_major/lib/llvmjit.so" "$r/usr/lib/postgresql/$pg_major/lib/llvmjit_types.bc"
	rm -rf "$r/usr/lib/postgresql/$pg_major/lib/bitcode"

	install -m 0755 "$entrypoint_src" "$r/usr/local/bin/docker-entrypoint.sh"
	ln -sf usr/local/bin/docker-entrypoint.sh "$r/docker-entrypoint.sh"
	mkdir -p "$r/docker-entrypoint-initdb.d" "$r/var/lib/postgresql/data" "$r/run/postgresql"
	chmod 0700 "$r/var/lib/postgresql/data"
	chmod 03775 "$r/run/postgresql"
	chroot "$r" chown -R postgres:postgres /var/lib/postgresql /run/postgresql

	# Caches, docs, man pages, translations, logs: nothing the server reads.
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
		"$r"/var/lib/dpkg/*-old "$r"/usr/share/doc/* "$r"/usr/share/man/* \
		"$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/tmp/* "$r"/var/tmp/* \
		"$r"/debootstrap "$r"/etc/resolv.conf "$r"/etc/hostname
	find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	find "$r/var/log" -type f -exec truncate -s 0 {} +
	# Keep later package installs from bringing docs and man pages back.
	cat >"$r/etc/dpkg/dpkg.cfg.d/ficus-nodoc" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	EOF

	[ -f "$r/usr/lib/postgresql/$pg_major/lib/wal2json.so" ] ||
		die "wal2json.so missing from the root file system"
	[ -x "$r/usr/bin/setpriv" ] || die "setpriv missing from the root file system"
}

import_rootfs() {
	local r="$1" sum tmp_tag="${pg_image}-rootfs-tmp"
	sum="$(sha256sum "$entrypoint_src" | cut -d' ' -f1)"
	tar --numeric-owner -C "$r" -c . |
		docker import \
			--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
			--change 'CMD ["postgres"]' \
			--change "ENV PATH=/usr/lib/postgresql/$pg_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
			--change "ENV PG_MAJOR=$pg_major" \
			--change 'ENV PGDATA=/var/lib/postgresql/data' \
			--change 'ENV LANG=en_US.utf8' \
			--change 'EXPOSE 5432' \
			--change "LABEL $entrypoint_label=$sum" \
			--change 'USER root' \
			--message "ficus postgres $pg_major from Debian $suite" \
			- "$tmp_tag" >/dev/null
	# docker import cannot set STOPSIGNAL; add it in a metadata-only build so
	# `docker stop` asks for a fast shutdown (SIGINT) like the upstream image
	# instead of a smart one that waits for every client to leave.
	local ctx="$work/stopsignal"
	mkdir -p "$ctx"
	printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$tmp_tag" >"$ctx/Dockerfile"
	docker_build -q -t "$pg_image" "$ctx" >/dev/null
	docker image rm "$tmp_tag" >/dev/null
}

build_postgres() {
	local want have
	want="$(sha256sum "$entrypoint_src" | cut -d' ' -f1)"
	if image_exists "$pg_image" && [ "$force" -eq 0 ]; then
		have="$(docker image inspect -f "{{ index .Config.Labels \"$entrypoint_label\" }}" "$pg_image" 2>/dev/null || true)"
		if [ "$have" = "$want" ]; then
			say "$pg_image exists; not rebuilding (use --force to rebuild)"
			return 0
		fi
		say "$pg_image was built from another images/postgres/docker-entrypoint.sh; rebuilding"
	fi
	[ "$(id -u)" -eq 0 ] || die "building $pg_image needs root (debootstrap and chroot); run scripts/images.sh as root"
	command -v debootstrap >/dev/null 2>&1 || step "install debootstrap" apt_install debootstrap
	local mirror t0
	mirror="$(detect_mirror)"
	t0="$(date +%s)"
	say "building $pg_image from $mirror ($suite)"
	work="$(mktemp -d /var/tmp/ficus-postgres-image.XXXXXX)"
	step "debootstrap $suite minbase + postgresql-$pg_major, wal2json" \
		run_debootstrap "$work/rootfs" "$mirror" "$work/debootstrap.log"
	step "shape root file system" shape_rootfs "$work/rootfs"
	say "root file system: $(du -sh --one-file-system "$work/rootfs" | cut -f1)"
	local old
	old="$(docker image inspect -f '{{.Id}}' "$pg_image" 2>/dev/null || true)"
	step "docker import $pg_image" import_rootfs "$work/rootfs"
	# Drop the image this build replaced, unless a container still uses it.
	if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$pg_image")" ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
	cleanup_dir "$work"
	work=""
	say "$pg_image built in $(($(date +%s) - t0))s, $(docker image inspect -f '{{.Size}}' "$pg_image" | awk '{printf "%.0f MB", $1/1e6}')"
}

build_ficus() {
	local ctx old new
	if ! compgen -G "cmd/ficus/*.go" >/dev/null; then
		die "./cmd/ficus does not exist (no Go files in $root/cmd/ficus): the ficus image needs the ficus main package there"
	fi
	command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build ./cmd/ficus"
	work="$(mktemp -d /var/tmp/ficus-image.XXXXXX)"
	ctx="$work"
	# Stamp the version the way `make build` does.
	local version
	version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
	# FICUS_GO_TAGS: build tags, for the end-to-end suite's deliberately
	# broken variants (make e2e-break, docs/e2e.md); empty for a real image.
	step "go build ./cmd/ficus (static, version $version${FICUS_GO_TAGS:+, tags $FICUS_GO_TAGS})" \
		env CGO_ENABLED=0 go build -trimpath -tags "${FICUS_GO_TAGS:-}" -ldflags "-X main.version=$version" -o "$ctx/ficus" ./cmd/ficus
	mkdir "$ctx/tmp" # the image's /tmp (images/ficus/Dockerfile)
	local ca=/etc/ssl/certs/ca-certificates.crt
	if [ ! -s "$ca" ]; then
		[ "$(id -u)" -eq 0 ] || die "$ca is missing: install Debian's ca-certificates package"
		step "install ca-certificates" apt_install ca-certificates
	fi
	grep -q "BEGIN CERTIFICATE" "$ca" || die "$ca holds no certificate"
	cp "$ca" "$ctx/ca-certificates.crt"
	local revision created repo tags=()
	revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
	if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
		revision="$revision-dirty"
	fi
	created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	tags=(-t "$ficus_image")
	if [ "${FICUS_IMAGE_ONLY:-0}" != 1 ]; then
		repo="${ficus_image%:*}"
		# A tag is [A-Za-z0-9_.-], at most 128, not starting with . or -.
		local vtag
		vtag="$(printf '%s' "$version" | tr -c 'A-Za-z0-9_.-' '_' | sed 's/^[.-]/_/' | cut -c1-128)"
		tags+=(-t "$repo:$vtag" -t "$repo:latest")
	fi
	old="$(docker image inspect -f '{{.Id}}' "$ficus_image" 2>/dev/null || true)"
	step "docker build ${tags[*]}" \
		docker_build -q -f "$root/images/ficus/Dockerfile" \
		--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
		"${tags[@]}" "$ctx" >/dev/null
	new="$(docker image inspect -f '{{.Id}}' "$ficus_image")"
	# Drop the image this build replaced, unless something still uses it.
	if [ -n "$old" ] && [ "$old" != "$new" ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
	cleanup_dir "$work"
	work=""
	say "$ficus_image built, $(docker image inspect -f '{{.Size}}' "$ficus_image" | awk '{printf "%.0f MB", $1/1e6}')"
}

# slicer_inputs_sum is the hash of what the slicer base is built from.
slicer_inputs_sum() {
	{
		cat "$slicer_packages"
		declare -f install_slicer_packages shape_slicer_rootfs
		echo "$suite"
	} | sha256sum | cut -d' ' -f1
}

# install_slicer_packages ROOTFS MIRROR PKGS installs PKGS (comma-separated)
# with apt inside ROOTFS, without recommends and without starting services.
install_slicer_packages() {
	local r="$1" mirror="$2" pkgs="$3"
	printf 'deb %s %s main\n' "$mirror" "$suite" >"$r/etc/apt/sources.list"
	cp /etc/resolv.conf "$r/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 0755 "$r/usr/sbin/policy-rc.d"
	mount -t proc proc "$r/proc"
	local rc=0
	chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
	[ "$rc" -eq 0 ] && { chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${pkgs//,/ } >"$work/apt.log" 2>&1 || rc=$?; }
	umount -l "$r/proc" || true
	rm -f "$r/usr/sbin/policy-rc.d"
	if [ "$rc" -ne 0 ]; then
		tail -n 30 "$work/apt.log" >&2 || true
		die "apt-get install $pkgs in the new root failed"
	fi
	chroot "$r" apt-get clean
}

# shape_slicer_rootfs turns the debootstrap tree into the slicer base.
shape_slicer_rootfs() {
	local r="$1"
	[ -x "$r/usr/bin/prusa-slicer" ] || die "prusa-slicer missing from the root file system"
	# The worker's user (the ficus image's 65532) and a /tmp it may write:
	# each slice makes its own directory there.
	echo 'ficus:x:65532:65532:ficus:/tmp:/usr/sbin/nologin' >>"$r/etc/passwd"
	echo 'ficus:x:65532:' >>"$r/etc/group"
	chmod 1777 "$r/tmp"
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
		"$r"/var/lib/dpkg/*-old "$r"/usr/share/doc/* "$r"/usr/share/man/* \
		"$r"/usr/share/info/* "$r"/usr/share/lintian "$r"/tmp/* "$r"/var/tmp/* \
		"$r"/debootstrap "$r"/etc/resolv.conf "$r"/etc/hostname
	find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	find "$r/var/log" -type f -exec truncate -s 0 {} +
}

build_slicer_base() {
	local want have mirror t0 pkgs
	want="$(slicer_inputs_sum)"
	if image_exists "$slicer_base" && [ "$force" -eq 0 ]; then
		have="$(docker image inspect -f "{{ index .Config.Labels \"$slicer_label\" }}" "$slicer_base" 2>/dev/null || true)"
		if [ "$have" = "$want" ]; then
			say "$slicer_base exists and its inputs did not change; not rebuilding (use --force to rebuild)"
			return 0
		fi
		say "$slicer_base was built from other inputs; rebuilding"
	fi
	[ "$(id -u)" -eq 0 ] || die "building $slicer_base needs root (debootstrap and chroot); run scripts/images.sh as root"
	command -v debootstrap >/dev/null 2>&1 || step "install debootstrap" apt_install debootstrap
	pkgs="$(grep -v '^[[:space:]]*#' "$slicer_packages" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
	mirror="$(detect_mirror)"
	t0="$(date +%s)"
	say "building $slicer_base from $mirror ($suite): $pkgs"
	work="$(mktemp -d /var/tmp/ficus-slicer-image.XXXXXX)"
	# debootstrap configures --include'd packages in its own order, which
	# fails for PrusaSlicer's GTK stack; apt inside the new root does not.
	step "debootstrap $suite minbase" \
		run_debootstrap "$work/rootfs" "$mirror" "$work/debootstrap.log" "ca-certificates"
	step "apt-get install $pkgs" install_slicer_packages "$work/rootfs" "$mirror" "$pkgs"
	step "shape root file system" shape_slicer_rootfs "$work/rootfs"
	say "root file system: $(du -sh --one-file-system "$work/rootfs" | cut -f1)"
	local old
	old="$(docker image inspect -f '{{.Id}}' "$slicer_base" 2>/dev/null || true)"
	step "docker import $slicer_base" sh -c "tar --numeric-owner -C '$work/rootfs' -c . |
		docker import --change 'LABEL $slicer_label=$want' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--message 'ficus PrusaSlicer base from Debian $suite' - '$slicer_base' >/dev/null"
	if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$slicer_base")" ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
	cleanup_dir "$work"
	work=""
	say "$slicer_base built in $(($(date +%s) - t0))s, $(docker image inspect -f '{{.Size}}' "$slicer_base" | awk '{printf "%.0f MB", $1/1e6}')"
}

build_slicer() {
	local ctx old new version t0
	t0="$(date +%s)"
	build_slicer_base
	command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build ./cmd/ficus"
	work="$(mktemp -d /var/tmp/ficus-slicer-worker.XXXXXX)"
	ctx="$work"
	version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
	# FICUS_GO_TAGS: build tags, for the end-to-end suite's deliberately
	# broken variants (make e2e-break, docs/e2e.md); empty for a real image.
	step "go build ./cmd/ficus (static, version $version${FICUS_GO_TAGS:+, tags $FICUS_GO_TAGS})" \
		env CGO_ENABLED=0 go build -trimpath -tags "${FICUS_GO_TAGS:-}" -ldflags "-X main.version=$version" -o "$ctx/ficus" ./cmd/ficus
	old="$(docker image inspect -f '{{.Id}}' "$slicer_image" 2>/dev/null || true)"
	step "docker build $slicer_image" \
		docker_build -q --build-arg "BASE=$slicer_base" -f "$root/images/slicer/Dockerfile" -t "$slicer_image" "$ctx" >/dev/null
	new="$(docker image inspect -f '{{.Id}}' "$slicer_image")"
	if [ -n "$old" ] && [ "$old" != "$new" ]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
	cleanup_dir "$work"
	work=""
	say "$slicer_image built in $(($(date +%s) - t0))s, $(docker image inspect -f '{{.Size}}' "$slicer_image" | awk '{printf "%.0f MB", $1/1e6}')"
}

build_toxiproxy() {
	if image_exists "$toxiproxy_image" && [ "$force" -eq 0 ]; then
		say "$toxiproxy_image exists; not rebuilding (use --force to rebuild)"
		return 0
	fi
	command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build toxiproxy"
	work="$(mktemp -d /var/tmp/ficus-toxiproxy-image.XXXXXX)"
	# Outside the ficus module, so that its go.mod does not pin the build.
	step "go install toxiproxy server $toxiproxy_version (static)" \
		env -C "$work" CGO_ENABLED=0 GOBIN="$work" GOFLAGS=-trimpath \
		go install "github.com/Shopify/toxiproxy/v2/cmd/server@$toxiproxy_version"
	step "docker build -t $toxiproxy_image" \
		docker_build -q -f "$root/images/toxiproxy/Dockerfile" --build-arg "VERSION=$toxiproxy_version" \
		-t "$toxiproxy_image" "$work" >/dev/null
	cleanup_dir "$work"
	work=""
}

# vm_inputs_sum hashes what the VictoriaMetrics images are made from.
vm_inputs_sum() {
	{
		echo "$vm_version"
		go version
		cat "$root/scripts/vm-build.sh" "$root/images/victoria-metrics/Dockerfile" "$root/images/vmalert/Dockerfile"
	} | sha256sum | cut -d' ' -f1
}

build_vm() {
	local want have1 have2 t0 ctx app image
	[ -n "$vm_version" ] || die "no VictoriaMetrics version: set VM_VERSION or keep VictoriaMetricsVersion in dashboards/live/live.go"
	command -v go >/dev/null 2>&1 || die "go is not on PATH; it is needed to build victoria-metrics and vmalert"
	want="$(vm_inputs_sum)"
	if [ "$force" -eq 0 ]; then
		have1="$(docker image inspect -f "{{ index .Config.Labels \"$vm_label\" }}" "$vm_image" 2>/dev/null || true)"
		have2="$(docker image inspect -f "{{ index .Config.Labels \"$vm_label\" }}" "$vmalert_image" 2>/dev/null || true)"
		if [ "$have1" = "$want" ] && [ "$have2" = "$want" ]; then
			say "$vm_image and $vmalert_image exist and their inputs did not change; not rebuilding (use --force to rebuild)"
			return 0
		fi
	fi
	t0="$(date +%s)"
	work="$(mktemp -d /var/tmp/ficus-vm-image.XXXXXX)"
	step "build victoria-metrics and vmalert $vm_version (scripts/vm-build.sh)" \
		env VM_VERSION="$vm_version" bash "$root/scripts/vm-build.sh" "$work/bin"
	for app in victoria-metrics vmalert; do
		image="$vm_image"
		[ "$app" = vmalert ] && image="$vmalert_image"
		ctx="$work/$app"
		mkdir -p "$ctx/storage"
		cp "$work/bin/$app" "$ctx/$app"
		step "docker build $image" \
			docker_build -q -f "$root/images/$app/Dockerfile" --build-arg "VERSION=$vm_version" \
			--label "$vm_label=$want" -t "$image" "$ctx" >/dev/null
	done
	cleanup_dir "$work"
	work=""
	say "$vm_image ($(docker image inspect -f '{{.Size}}' "$vm_image" | awk '{printf "%.0f MB", $1/1e6}')) and $vmalert_image ($(docker image inspect -f '{{.Size}}' "$vmalert_image" | awk '{printf "%.0f MB", $1/1e6}')) built in $(($(date +%s) - t0))s"
}

step "docker engine" "$root/scripts/docker-up.sh"
# One build at a time on this machine: a concurrent run waits, then finds
# the Postgres image built.
lock_file="${TMPDIR:-/tmp}/ficus-images.lock"
if { : >>"$lock_file"; } 2>/dev/null; then
	exec 9>>"$lock_file"
	if ! flock -n 9; then
		say "another images.sh is running; waiting for it"
		flock 9
	fi
fi
for t in "${targets[@]}"; do
	case "$t" in
	postgres) build_postgres ;;
	ficus) build_ficus ;;
	slicer) build_slicer ;;
	toxiproxy) build_toxiproxy ;;
	vm) build_vm ;;
	esac
done
