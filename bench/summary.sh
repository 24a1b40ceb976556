#!/usr/bin/env bash
# Publishing and listing an archive repository against ostree, in the same run.
#
#   bench/summary.sh        (root for the trees' owners; needs ostree; builds the trees once)
#
# Commits rootfs-v1 and rootfs-v2 (../shared/bench/make-rootfs.sh) as two refs
# into an archive and a bare-user repository of each tool (outside the timing),
# then times, hot (trees and repositories in the page cache), RUNS times:
#   - the first `slate summary --update` of the archive repository (every
#     commit walked for its size) against `ostree summary -u`;
#   - republishing with nothing changed (`slate summary --update` again,
#     `ostree summary -u` again): target < 2 s;
#   - `slate ls -R -l` of v2 on the archive repository against the same on
#     the bare-user one (target: within 2x), and `ostree ls -R` of v2 on
#     ostree's archive repository.
# Prints every run, medians, and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/summary.sh: needs root (the trees' owners)" >&2; exit 2; }
command -v ostree >/dev/null || { echo "bench/summary.sh: ostree missing: apt-get install ostree" >&2; exit 2; }

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
(cd "$top" && cargo build --release -q -p slate)
SLATE=${SLATE:-$top/target/release/slate}
echo "slate: $($SLATE --version); ostree $(ostree --version | sed -n "s/.*Version: '\{0,1\}\([^']*\)'\{0,1\}/\1/p" | head -1)"

work=$(mktemp -d "${TMPDIR:-/tmp}/slate-bench-summary.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "committing v1 and v2 into the four repositories (not timed)..."
for mode in archive bare-user; do
  $SLATE init --repo "$work/s-$mode" --mode "$mode" >/dev/null
  for v in v1 v2; do
    $SLATE commit --repo "$work/s-$mode" -b "os/$v" -s "$v" --timestamp 1700000000 "$BENCH_DIR/rootfs-$v" >/dev/null 2>&1
  done
  ostree init --repo="$work/o-$mode" --mode="$mode"
  for v in v1 v2; do
    ostree commit --repo="$work/o-$mode" -b "os/$v" -s "$v" --tree=dir="$BENCH_DIR/rootfs-$v" >/dev/null
  done
done
nfiles=$($SLATE ls --repo "$work/s-archive" -R os/v2 | wc -l)
echo "v2 lists $nfiles paths"

results=$work/results
: >"$results"
# run NAME COMMAND...: time one run (output to /dev/null), record "NAME seconds".
run() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  local s; s=$(echo "$t1 - $t0" | bc -l)
  printf '%-28s %8.3f s\n' "$name" "$s"
  echo "$name $s" >>"$results"
}

for i in $(seq 1 "$RUNS"); do
  echo "--- iteration $i"
  rm -rf "$work/s-archive/cache" "$work/s-archive/summary.json"
  run slate-summary-first "$SLATE" summary --repo "$work/s-archive" --update
  run slate-summary-again "$SLATE" summary --repo "$work/s-archive" --update
  rm -f "$work/o-archive/summary"
  run ostree-summary-first ostree summary --repo="$work/o-archive" -u
  run ostree-summary-again ostree summary --repo="$work/o-archive" -u
  # Each ls in a new process: nothing kept from the previous run.
  run slate-ls-archive "$SLATE" ls --repo "$work/s-archive" -R -l os/v2
  run slate-ls-bare-user "$SLATE" ls --repo "$work/s-bare-user" -R -l os/v2
  run ostree-ls-archive ostree ls --repo="$work/o-archive" -R os/v2
done

median() { grep "^$1 " "$results" | awk '{print $2}' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "medians of $RUNS runs:"
for n in slate-summary-first ostree-summary-first slate-summary-again ostree-summary-again \
         slate-ls-archive slate-ls-bare-user ostree-ls-archive; do
  printf '%-28s %8.3f s\n' "$n" "$(median $n)"
done
ratio() { echo "scale=2; $(median "$1") / $(median "$2")" | bc -l; }
echo
echo "summary, first:           slate/ostree = $(ratio slate-summary-first ostree-summary-first)"
echo "summary, nothing changed: slate/ostree = $(ratio slate-summary-again ostree-summary-again) (target: slate < 2 s)"
echo "ls -R -l: archive/bare-user = $(ratio slate-ls-archive slate-ls-bare-user) (target <= 2); slate archive/ostree archive = $(ratio slate-ls-archive ostree-ls-archive)"
