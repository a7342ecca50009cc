#!/usr/bin/env bash
# model-corpus.sh DIR: the real model files the pricing/mesh tests check
# the parsers and the analysis on (docs/pricing-mesh.md). It unpacks the
# STL, OBJ and 3MF meshes of Debian's cura package (resources/meshes,
# mostly printer build plates) into DIR/cura, without installing cura.
# Idempotent: a DIR that holds them already is left alone. Then run
#
#   FICUS_MODEL_CORPUS=DIR go test ./pricing/mesh/
#
# The PrusaSlicer shapes the tests also read come with the prusa-slicer
# package itself (/usr/share/PrusaSlicer/shapes).
set -euo pipefail

say() { printf 'model-corpus: %s\n' "$*" >&2; }

[ $# -eq 1 ] || { say "usage: scripts/model-corpus.sh DIR"; exit 2; }
dir="$1"
if [ -f "$dir/cura/.complete" ]; then
	say "$dir/cura is there already ($(cat "$dir/cura/.complete"))"
	exit 0
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
	{ say "needs apt-get and dpkg (Debian or Ubuntu)"; exit 1; }

tmp="$(mktemp -d /tmp/ficus-model-corpus.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt-get download runs as _apt where it can
if ! (cd "$tmp" && apt-get download cura >/dev/null 2>"$tmp/apt.log"); then
	if [ "$(id -u)" -eq 0 ]; then
		say "apt-get download cura failed; updating the package lists and trying again"
		apt-get update -qq
		(cd "$tmp" && apt-get download cura >/dev/null)
	else
		cat "$tmp/apt.log" >&2
		say "apt-get download cura failed (as root, run apt-get update first)"
		exit 1
	fi
fi
deb="$(ls "$tmp"/cura_*.deb)"
dpkg -x "$deb" "$tmp/x"
meshes="$tmp/x/usr/share/cura/resources/meshes"
[ -d "$meshes" ] || { say "$deb has no resources/meshes"; exit 1; }
rm -rf "$dir/cura"
mkdir -p "$dir/cura"
find "$meshes" -maxdepth 1 -type f \( -iname '*.stl' -o -iname '*.obj' -o -iname '*.3mf' \) -exec cp {} "$dir/cura/" \;
basename "$deb" >"$dir/cura/.complete"
say "$(find "$dir/cura" -type f ! -name .complete | wc -l) model files from $(basename "$deb") in $dir/cura"
