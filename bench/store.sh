#!/usr/bin/env bash
# Benchmark of the image store against ostree on a real Debian tree.
#
#   bench/store.sh            (root; needs ostree, mmdebstrap; builds the tree once)
#
# Builds rootfs-v1 (../shared/bench/make-rootfs.sh: minbase + systemd, about
# 8,100 files, 223 MB), then times, in the same run and alternating tools:
#   - commit into a fresh bare-user repository
#   - commit into a fresh archive repository (and the repository size)
#   - committing the unchanged tree again (bare-user)
#   - hard-link checkout (and `cp -al` of the same tree)
# Repositories live on a loop-mounted ext4 image of their own, because both
# tools call syncfs. Prints medians of RUNS runs, peak RSS and ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/store.sh: needs root (mmdebstrap, loop mount)" >&2; exit 2; }
command -v ostree >/dev/null || { echo "bench/store.sh: ostree missing: apt-get install ostree" >&2; exit 2; }

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
TREE=$BENCH_DIR/rootfs-v1
(cd "$top" && cargo build --release -q)
SLATE=$top/target/release/slate
echo "slate: $($SLATE --version); $(ostree --version | sed -n 's/.*Version: //p' | tr -d "'" | head -1 | sed 's/^/ostree /')"

work=$(mktemp -d "${TMPDIR:-/tmp}/slate-bench-store.XXXXXX")
mnt=$work/mnt
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
truncate -s 4G "$work/fs.img"
mkdir -p "$mnt"
tar -C "$TREE" -cf - . >/dev/null   # warm the page cache

results=$work/results
: >"$results"
# run NAME COMMAND...: time one run, record "NAME seconds maxrss_kb"
run() {
  local name=$1; shift
  sync; sleep 2
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  echo "$name $(cat "$work/t")" >>"$results"
}

for i in $(seq "$RUNS"); do
  # A fresh filesystem per iteration: deleting the last one's repositories
  # would otherwise still be in flight while the next is timed.
  umount "$mnt" 2>/dev/null || true
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/fs.img"
  mount -o loop "$work/fs.img" "$mnt"
  cp -a "$TREE" "$mnt/tree"   # for `cp -al`, which needs the same filesystem
  "$SLATE" init --repo "$mnt/s-bu" --mode bare-user 2>/dev/null
  ostree init --repo="$mnt/o-bu" --mode=bare-user
  "$SLATE" init --repo "$mnt/s-ar" --mode archive 2>/dev/null
  ostree init --repo="$mnt/o-ar" --mode=archive
  s_bu() { run slate-commit-bare-user "$SLATE" commit --repo "$mnt/s-bu" -b main --timestamp 0 "$TREE"; }
  o_bu() { run ostree-commit-bare-user ostree commit --repo="$mnt/o-bu" -b main "$TREE"; }
  s_ar() { run slate-commit-archive "$SLATE" commit --repo "$mnt/s-ar" -b main --timestamp 0 "$TREE"; }
  o_ar() { run ostree-commit-archive ostree commit --repo="$mnt/o-ar" -b main "$TREE"; }
  s_re() { run slate-recommit "$SLATE" commit --repo "$mnt/s-bu" -b main --timestamp 1 "$TREE"; }
  o_re() { run ostree-recommit ostree commit --repo="$mnt/o-bu" -b main "$TREE"; }
  s_fs() { run slate-fsck "$SLATE" fsck --repo "$mnt/s-bu"; }
  o_fs() { run ostree-fsck ostree fsck --repo="$mnt/o-bu"; }
  # Both to a file through standard output (`-o` would add an fsync).
  s_ex() { run slate-export sh -c "'$SLATE' export --repo '$mnt/s-bu' main > '$mnt/s.tar'"; }
  o_ex() { run ostree-export sh -c "ostree export --repo='$mnt/o-bu' main > '$mnt/o.tar'"; }
  s_co() { run slate-checkout "$SLATE" checkout --repo "$mnt/s-bu" main "$mnt/co-s"; }
  o_co() { run ostree-checkout ostree checkout --repo="$mnt/o-bu" -U main "$mnt/co-o"; }
  if (( i % 2 )); then
    s_bu; o_bu; s_ar; o_ar; s_re; o_re; s_co; o_co; s_fs; o_fs; s_ex; o_ex
  else
    o_bu; s_bu; o_ar; s_ar; o_re; s_re; o_co; s_co; o_fs; s_fs; o_ex; s_ex
  fi
  run cp-al cp -al "$mnt/tree" "$mnt/co-cp"
  echo "$(du -sb "$mnt/s-ar" | cut -f1) $(du -sb "$mnt/o-ar" | cut -f1)" >"$work/sizes"
done
python3 - "$results" "$work/sizes" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(list); m = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, secs, rss = line.split()
    t[name].append(float(secs)); m[name].append(int(rss))
med = {k: statistics.median(v) for k, v in t.items()}
for k in sorted(t):
    print(f"  {k:<26} runs: " + " ".join(f"{x:.2f}" for x in t[k]))
rss = {k: max(v) / 1024 for k, v in m.items()}
s_size, o_size = map(int, open(sys.argv[2]).read().split())
print(f"{'work':<28}{'slate':>9}{'peer':>9}{'ratio':>8}   slate peak RSS")
def row(label, s, p, target):
    ratio = med[p] / med[s]
    print(f"{label:<28}{med[s]:>8.2f}s{med[p]:>8.2f}s{ratio:>7.1f}x   {rss[s]:.0f} MiB   (target >= {target}x)")
row("commit bare-user", "slate-commit-bare-user", "ostree-commit-bare-user", 4)
row("commit archive", "slate-commit-archive", "ostree-commit-archive", 5)
row("commit unchanged tree", "slate-recommit", "ostree-recommit", 6)
row("hard-link checkout", "slate-checkout", "ostree-checkout", 1.5)
row("fsck (bare-user)", "slate-fsck", "ostree-fsck", 3)
row("export to a tar file", "slate-export", "ostree-export", 1)
print(f"{'checkout vs cp -al':<28}{med['slate-checkout']:>8.2f}s{med['cp-al']:>8.2f}s{med['cp-al']/med['slate-checkout']:>7.2f}x   (target: slate within 1.5x of cp -al)")
print(f"archive repository size: slate {s_size/1e6:.1f} MB, ostree {o_size/1e6:.1f} MB, ratio {s_size/o_size:.2f} (target <= 0.8)")
print(f"runs per figure: {len(t['slate-commit-bare-user'])} (medians)")
PY
