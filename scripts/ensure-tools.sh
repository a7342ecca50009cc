#!/usr/bin/env bash
# ensure-tools.sh: the reference tools the tests compare ficus with
# (PrusaSlicer, OpenSCAD, admesh, numpy-stl, promtool) and the browser that drives the
# operators' page (Chromium). Installs what is missing from
# Debian's packages when run as root on Debian; elsewhere it says what is
# missing, and the tests that need it skip (unless FICUS_REQUIRE_TOOLS=1,
# as CI sets, which makes them fail instead).
set -euo pipefail

say() { printf 'ensure-tools: %s\n' "$*" >&2; }

missing=()
command -v prusa-slicer >/dev/null 2>&1 || missing+=(prusa-slicer)
command -v openscad >/dev/null 2>&1 || missing+=(openscad)
command -v admesh >/dev/null 2>&1 || missing+=(admesh)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus) # promtool, for the alert rule tests
/usr/bin/python3 -c 'import stl' >/dev/null 2>&1 || missing+=(python3-stl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	say "missing ${missing[*]}: the tests that compare with them skip (Debian: sudo apt-get install ${missing[*]})"
	exit 0
fi
say "installing Debian's ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
