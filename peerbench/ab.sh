#!/usr/bin/env bash
# A/B of two peerbench builds on a noisy machine: runs them alternately (ABBA, so that
# neither always runs second), ROUNDS times each,
# with the same arguments, and prints each round's ratio of STACK to the first stack of
# the run (peerbench's "x first" column), then the median and quartiles of each build and
# the median of the paired differences (B - A, round by round). Figures on a shared 2-core
# machine swing by 10-20 % between runs minutes apart; alternating and pairing the rounds
# keeps that swing out of the comparison as far as it can.
#
# usage: peerbench/ab.sh [-n ROUNDS] [-s STACK] BIN_A BIN_B -- PEERBENCH_ARGS...
#   BIN_A, BIN_B   two peerbench binaries (e.g. built from two grid commits, see
#                  with-grid.sh; copy each build's binary aside before the next)
#   -n ROUNDS      rounds per build (default 8)
#   -s STACK       the stack whose ratio is compared (default grid)
#   PEERBENCH_ARGS the scenario and options, run from ../shared/peerbench; list the
#                  baseline stack first, e.g. `stream --stream-msg 16384 --stacks raw-ws,grid`
set -euo pipefail
rounds=8 stack=grid
while getopts n:s: opt; do
    case $opt in
        n) rounds=$OPTARG ;;
        s) stack=$OPTARG ;;
        *) sed -n '/^# usage:/,/^#   PEERBENCH_ARGS/p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
(($# >= 3)) && [[ $3 == -- ]] || { sed -n '/^# usage:/,/^#   PEERBENCH_ARGS/p' "$0" >&2; exit 2; }
a=$(realpath "$1") b=$(realpath "$2")
shift 3
cd "$(dirname "$0")/../../shared/peerbench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((i = 1; i <= rounds; i++)); do
    # A first in odd rounds, B first in even ones: measured with one build on both sides,
    # the second run of a round came out 0.07x lower than the first (typed-stream).
    order="A B"; ((i % 2)) || order="B A"
    for side in $order; do
        bin=$a; [[ $side == B ]] && bin=$b
        # A failed run (or awk leaving before peerbench finished) is a "nan" round, not
        # the end of the comparison.
        r=$("$bin" "$@" 2>/dev/null | awk -F'|' -v s=" $stack " '$4 == s { gsub(/ /, "", $6); r = $6 } END { print r }') || true
        echo "$i $side ${r:-nan}" | tee -a "$out"
    done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
v = {s: [float(r) for i, t, r in rows if t == s and r != "nan"] for s in "AB"}
def q(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return xs * 3 if xs else [float("nan")] * 3
    qs = statistics.quantiles(xs, n=4)
    return [qs[0], statistics.median(xs), qs[2]]
for s in "AB":
    lo, med, hi = q(v[s])
    print(f"{s}: median {med:.3f} (quartiles {lo:.3f}-{hi:.3f}) of {len(v[s])} runs")
pairs = {}
for i, t, r in rows:
    if r != "nan":
        pairs.setdefault(i, {})[t] = float(r)
d = [p["B"] - p["A"] for p in pairs.values() if len(p) == 2]
if d:
    print(f"B - A, paired by round: median {statistics.median(d):+.3f}, "
          f"{sum(x > 0 for x in d)} of {len(d)} rounds above 0")
PY
