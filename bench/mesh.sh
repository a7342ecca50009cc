#!/usr/bin/env bash
# bench/mesh.sh: the model-analysis benchmark behind "make bench". One run
# that puts, side by side on the same generated binary STL (a closed torus
# of BENCH_MESH_TRIANGLES triangles, bench/meshbench gen):
#
#   ficus       pricing/mesh Parse + Analyze (bench/meshbench run): volume,
#               area, bounding box, shells, closed and manifold
#   admesh      Debian's admesh with its default checks (exact and nearby
#               matching, normals, volume), always under timeout 60
#   numpy-stl   Debian's python3-stl: Mesh.from_file, get_mass_properties()
#               and areas.sum(); "numpy-stl (in Python)" is the time Python
#               measures around those three calls, without the interpreter's
#               start and numpy's import
#
# Every round runs each contender once, as a fresh process (a quote reads
# its model once), pinned to the contender CPU; the median wall time of the
# rounds is reported, with the median CPU time (user + system) and the
# peak resident memory. The goal: ficus at least 2× as fast as admesh and
# under 0.5 s. The table goes to stdout and to bench/results/mesh.md. See
# docs/pricing-mesh.md.
#
# Environment (defaults in brackets):
#   BENCH_MESH_TRIANGLES  triangles of the generated model [1000000]
#   BENCH_MESH_ROUNDS     rounds, each running every contender once [5]
#   BENCH_MESH_OUT        where the table is written [bench/results/mesh.md]
#   BENCH_PIN, BENCH_CPU_PROXY
#                         as in bench/run.sh: the contender on CPU 1 [1, 1]
#   BENCH_QUIET_WAIT      seconds to wait, before each round, for other work
#                         to use at most 10% of the CPUs [60]
#   BENCH_MAX_OTHER       a run during which other processes used more than
#                         this percentage of the CPUs is run again [10]
#   BENCH_RETRIES         how many times at most [2]
#   BENCH_KEEP_WORK       1 keeps the temporary directory (the model) [0]
#   GO                    the go command [go]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'bench mesh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

triangles="${BENCH_MESH_TRIANGLES:-1000000}"
rounds="${BENCH_MESH_ROUNDS:-5}"
out="${BENCH_MESH_OUT:-bench/results/mesh.md}"
GO="${GO:-go}"
if ! [[ "$triangles" =~ ^[1-9][0-9]*$ ]] || [ "$triangles" -gt 5000000 ]; then
	die "BENCH_MESH_TRIANGLES=$triangles: want 1 to 5000000 triangles (ficus's default limit)"
fi
[[ "$rounds" =~ ^[1-9]$ ]] || die "BENCH_MESH_ROUNDS=$rounds: want 1 to 9 rounds"

bench_settings
[ -n "$pin_note" ] || pin_note="each contender on CPU $cpu_proxy, one at a time"

# ------------------------------------------------------------------- tools

need=()
command -v admesh >/dev/null || need+=(admesh)
/usr/bin/python3 -c 'import stl' 2>/dev/null || need+=(python3-stl)
[ -x /usr/bin/time ] || need+=(time)
if [ "${#need[@]}" -gt 0 ]; then
	apt_install "${need[@]}" || say "could not install ${need[*]}: contenders that need them are n/a"
fi

work="$(mktemp -d /tmp/ficus-bench-mesh.XXXXXX)"
pids=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "${BENCH_KEEP_WORK:-0}" = 1 ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building bench/meshbench"
mkdir -p "$work/bin"
CGO_ENABLED=0 "$GO" build -trimpath -o "$work/bin/" ./bench/meshbench || die "building bench/meshbench failed"
model="$work/torus.stl"
"$work/bin/meshbench" gen -triangles "$triangles" "$model" || die "generating the model failed"
size_mb="$(awk -v b="$(stat -c %s "$model")" 'BEGIN { printf "%.1f", b / 1e6 }')"
say "model: $model, $size_mb MB"

cat >"$work/numpy_stl.py" <<'PY'
import sys, time, warnings
warnings.simplefilter("ignore")
from stl import mesh
t0 = time.perf_counter()
m = mesh.Mesh.from_file(sys.argv[1])
volume = m.get_mass_properties()[0]
area = m.areas.sum()
t1 = time.perf_counter()
print("seconds=%.4f triangles=%d volume=%.6f area=%.6f" % (t1 - t0, len(m.vectors), volume, area))
PY

# ----------------------------------------------------------------- measure

contenders=(ficus admesh numpy-stl)
declare -A walls cpus rss inner result note other_of

# timed NAME CMD... runs CMD pinned, appending its wall and CPU seconds and
# peak RSS to NAME's lists; its stdout is kept in $work/NAME.out.
timed() {
	local name="$1" rc=0
	shift
	if [ -x /usr/bin/time ]; then
		on "$cpu_proxy" /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
	else
		local TIMEFORMAT='%R %U %S -'
		{ time on "$cpu_proxy" "$@" >"$work/$name.out" 2>"$work/$name.err"; } 2>"$work/$name.time" || rc=$?
	fi
	return "$rc"
}

run_contender() {
	case "$1" in
	ficus) timed ficus "$work/bin/meshbench" run "$model" ;;
	admesh) timed admesh timeout 60 admesh "$model" ;;
	numpy-stl) timed numpy-stl /usr/bin/python3 "$work/numpy_stl.py" "$model" ;;
	esac
}

for ((r = 1; r <= rounds; r++)); do
	wait_quiet
	for c in "${contenders[@]}"; do
		[ -z "${note[$c]:-}" ] || continue
		rc=0
		accounted run_contender "$c" || rc=$?
		if [ "$rc" -ne 0 ]; then
			if [ "$c" = admesh ] && [ "$rc" = 124 ]; then
				note[$c]="n/a (timed out after 60 s)"
			else
				note[$c]="n/a (exit $rc: $(tail -n 1 "$work/$c.err" 2>/dev/null))"
			fi
			say "$c: ${note[$c]}"
			continue
		fi
		read -r wall user sys maxrss <"$work/$c.time" || true
		walls[$c]+="$wall "
		cpus[$c]+="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') "
		rss[$c]+="$maxrss "
		other_of[$c]+="$other "
		case "$c" in
		ficus)
			inner[$c]+="$(sed -n 's/^seconds=\([^ ]*\).*/\1/p' "$work/$c.out") "
			result[$c]="$(sed -n 's/^triangles=/triangles=/p' "$work/$c.out")"
			;;
		admesh)
			result[$c]="volume=$(sed -n 's/.*Volume *: *\([^ ]*\).*/\1/p' "$work/$c.out") parts=$(sed -n 's/.*Number of parts *: *\([0-9]*\).*/\1/p' "$work/$c.out")"
			;;
		numpy-stl)
			inner[$c]+="$(sed -n 's/^seconds=\([^ ]*\).*/\1/p' "$work/$c.out") "
			result[$c]="$(sed -n 's/^seconds=[^ ]* //p' "$work/$c.out")"
			;;
		esac
		say "round $r: $c ${wall}s wall, ${user}s user, ${sys}s system, other work ${other}%"
	done
done
busy_after="$(busy_percent)"

# ------------------------------------------------------------------ report

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
fmt_s() { [ -n "$1" ] && awk -v s="$1" 'BEGIN { printf "%.2f s", s }' || echo "n/a"; }
fmt_rss() { [[ "$1" =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }' || echo "n/a"; }

report() {
	local c wall cpu base cbase ratio cratio goal worst
	base="$(median "${walls[admesh]:-}")"
	cbase="$(median "${cpus[admesh]:-}")"
	echo "# ficus model analysis benchmark"
	echo
	echo "- when: $(date -u '+%Y-%m-%d %H:%M UTC'), ficus $(git describe --tags --always --dirty 2>/dev/null || echo dev)"
	echo "- machine: $ncpu CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory"
	echo "- placement: $pin_note"
	echo "- CPUs busy with other work, sampled for 2s before / after the run: ${busy_before}% / ${busy_after}% (above a few percent, the figures are noisy)"
	echo "- model: a closed torus of about $triangles triangles (bench/meshbench gen), a binary STL of $size_mb MB, in the page cache"
	echo "- method: $rounds round(s), each running every contender once as a fresh process; wall = from the process's start to its exit; CPU = user + system; the medians are reported; vs admesh = admesh's median wall / the contender's"
	echo "- $("$GO" version | cut -d' ' -f3); $(admesh --version 2>/dev/null | head -n 1 || echo admesh); python3-stl $(dpkg-query -W -f '${Version}' python3-stl 2>/dev/null || echo '?')"
	echo
	echo "| contender | wall (median) | CPU (median) | vs admesh, wall | vs admesh, CPU | goal | peak RSS | other work (max) | what it found |"
	echo "|---|--:|--:|--:|--:|---|--:|--:|---|"
	for c in "${contenders[@]}"; do
		wall="$(median "${walls[$c]:-}")"
		cpu="$(median "${cpus[$c]:-}")"
		ratio="-" cratio="-"
		[ -n "$wall" ] && [ -n "$base" ] && ratio="$(awk -v a="$base" -v b="$wall" 'BEGIN { printf "%.2f×", a / b }')"
		[ -n "$cpu" ] && [ -n "$cbase" ] && cratio="$(awk -v a="$cbase" -v b="$cpu" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')"
		worst="$(tr ' ' '\n' <<<"${other_of[$c]:-} ${other_of[admesh]:-}" | grep -v '^$' | sort -g | tail -n 1)"
		goal=""
		if [ "$c" = ficus ] && [ -n "$wall" ] && [ -n "$base" ]; then
			goal="$(awk -v a="$base" -v b="$wall" -v o="${worst:-0}" -v m="$max_other" 'BEGIN {
				printf "≥ 2× admesh: %s; < 0.5 s: %s%s", (a / b >= 2 ? "met" : "missed"), (b < 0.5 ? "met" : "missed"),
					(o > m ? " (unreliable: other work)" : "")
			}')"
		fi
		if [ -n "${note[$c]:-}" ] && [ -z "$wall" ]; then
			echo "| $c | ${note[$c]} | | | | | | | |"
			continue
		fi
		echo "| $c | $(fmt_s "$wall") | $(fmt_s "$cpu") | $ratio | $cratio | $goal | $(fmt_rss "$(median "${rss[$c]:-}")") | $(tr ' ' '\n' <<<"${other_of[$c]:-}" | sort -g | tail -n 1)% | ${result[$c]:-} |"
		if [ -n "${inner[$c]:-}" ]; then
			echo "| $c (in process) | $(fmt_s "$(median "${inner[$c]}")") | | | | | | | $([ "$c" = ficus ] && echo "Parse + Analyze, timed by meshbench" || echo "from_file + get_mass_properties + areas.sum, timed in Python") |"
		fi
	done
}

mkdir -p "$(dirname "$out")"
report | tee "$out"
say "table written to $out"
