#!/usr/bin/env bash
# Shows that the proxy's hostile-peer tests find the defects they guard
# against: builds ficus at an earlier commit (c5d164a by default, the build
# before the proxy's hardening), runs TestProxyBinaryAgainstHostilePeers
# against that binary and against this tree's, and checks that every
# subtest fails on the earlier build, for the defect rather than because
# the proxy did not start, and passes on this tree.
#
#   scripts/proxy-regressions.sh [COMMIT]
#
# Exits 0 when both hold, 1 otherwise; the per-subtest verdicts are printed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
rev="$(git -C "$root" rev-parse --short "${1:-c5d164a}^{commit}")"
GO="${GO:-go}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> building ficus at $rev"
mkdir -p "$work/src"
git -C "$root" archive "$rev" | tar -x -C "$work/src"
(cd "$work/src" && CGO_ENABLED=0 "$GO" build -trimpath -o "$work/ficus-$rev" ./cmd/ficus)

run() { # $1: binary or "" for this tree's; output to $2
	(cd "$root" && FICUS_PROXY_BINARY="$1" "$GO" test -count=1 -v -timeout 5m \
		-run '^TestProxyBinaryAgainstHostilePeers$' ./cmd/ficus) >"$2" 2>&1 || true
}
echo "==> the tests against ficus at $rev"
run "$work/ficus-$rev" "$work/previous.log"
echo "==> the tests against this tree"
run "" "$work/current.log"

# subtests lists the subtests of a log with their verdict: "PASS name".
subtests() {
	sed -n 's/^ *--- \(PASS\|FAIL\): TestProxyBinaryAgainstHostilePeers\/\([^ ]*\) .*/\1 \2/p' "$1" | sort -k2
}
ok=1
names="$(subtests "$work/current.log" | awk '{print $2}')"
if [ -z "$names" ]; then
	echo "no subtests ran against this tree:" >&2
	tail -40 "$work/current.log" >&2
	exit 1
fi
printf '%-36s %-12s %s\n' subtest "at $rev" "this tree"
for name in $names; do
	before="$(subtests "$work/previous.log" | awk -v n="$name" '$2 == n {print $1}')"
	now="$(subtests "$work/current.log" | awk -v n="$name" '$2 == n {print $1}')"
	printf '%-36s %-12s %s\n' "$name" "${before:-missing}" "${now:-missing}"
	[ "$before" = FAIL ] || ok=0
	[ "$now" = PASS ] || ok=0
done
if grep -q "could not start ficus proxy" "$work/previous.log"; then
	echo "ficus at $rev did not start in some subtests, so their failures prove nothing:" >&2
	grep -A3 "could not start ficus proxy" "$work/previous.log" >&2
	ok=0
fi
echo
echo "==> what the tests found at $rev"
grep -E '^\s+proxy_hostile_test.go:[0-9]+:' "$work/previous.log" | cut -c1-220 || true
if [ "$ok" = 1 ]; then
	echo "PASS: every subtest fails at $rev and passes now"
else
	echo "FAIL: a subtest passes at $rev or fails now" >&2
	exit 1
fi
