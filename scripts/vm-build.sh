#!/usr/bin/env bash
# vm-build.sh builds the VictoriaMetrics single-node server and vmalert from
# the pinned Go module, as static binaries (CGO_ENABLED=0: VictoriaMetrics
# then uses its pure-Go zstd, as its own "-pure" release builds do):
#
#   DIR/victoria-metrics   github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics
#   DIR/vmalert            github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert
#
# The version is VM_VERSION (default: the one dashboards/live pins in
# VictoriaMetricsVersion). A binary whose -version already names it is kept.
# Modules come through the Go module proxy; the Go build cache makes a
# rebuild take seconds, an empty one takes minutes (docs/e2e.md).
#
# Usage: scripts/vm-build.sh [--force] [DIR]    (DIR defaults to ./bin)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module=github.com/VictoriaMetrics/VictoriaMetrics
pinned="$(sed -n 's/^[[:space:]]*VictoriaMetricsVersion[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$root/dashboards/live/live.go")"
version="${VM_VERSION:-$pinned}"
[ -n "$version" ] || {
	echo "vm-build: no version: set VM_VERSION or keep VictoriaMetricsVersion in dashboards/live/live.go" >&2
	exit 1
}

force=0
if [ "${1:-}" = "--force" ]; then
	force=1
	shift
fi
dir="${1:-$root/bin}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
command -v go >/dev/null 2>&1 || {
	echo "vm-build: go is not on PATH" >&2
	exit 1
}

for app in victoria-metrics vmalert; do
	want="$app-$version"
	if [ "$force" -eq 0 ] && [ -x "$dir/$app" ] && [ "$("$dir/$app" -version 2>/dev/null)" = "$want" ]; then
		echo "vm-build: $dir/$app is $want; not rebuilding" >&2
		continue
	fi
	t0="$(date +%s)"
	# go install PKG@VERSION builds outside this module, with the pinned
	# module's own go.mod and go.sum.
	(cd "$dir" && env GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath \
		-ldflags "-s -w -X $module/lib/buildinfo.Version=$want" \
		"$module/app/$app@$version")
	got="$("$dir/$app" -version)"
	[ "$got" = "$want" ] || {
		echo "vm-build: $dir/$app -version says '$got', not '$want'" >&2
		exit 1
	}
	echo "vm-build: $dir/$app ($want) built in $(($(date +%s) - t0))s" >&2
done
