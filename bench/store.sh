#!/usr/bin/env bash
# Benchmark of the image store against ostree on a real Debian tree.
#
#   bench/store.sh            (root; needs ostree, mmdebstrap; builds the tree once)
#
# Builds rootfs-v1 (../shared/bench/make-rootfs.sh: minbase + systemd, about
# 8,100 files, 223 MB), then times, in the same run and alternating which
# tool goes first:
#   - commit into a fresh bare-user repository
#   - commit into a fresh archive repository (and the repository size)
#   - committing the unchanged tree again (bare-user)
#   - hard-link checkout (and `cp -al` of the same tree), fsck, export
# The three commits are timed twice: with the tree in the page cache ("hot":
# a tree that was just built) and with every cache dropped first ("cold": a
# tree read from the disk).
#
# Method (each point keeps the host's own activity out of the figures):
# - Repositories live on an ext4 image of their own, because both tools
#   call syncfs, made anew for each iteration.
# - The image is written out in full once, and mkfs does not discard it, so
#   the loop device writes into allocated blocks as a disk does (a sparse
#   image would add the host filesystem's block allocation to every run).
# - The loop device uses direct I/O (LOOP_DIO=0 turns it off): its writes
#   reach the disk within the timed run instead of piling up in the host's
#   page cache as dirty pages of the image and being written back during a
#   later run.
# - A hot run first reads its input (the tree, or the repository): the host
#   drops page cache that has been idle for about 30 s, which would
#   otherwise turn random parts of a run into disk reads. (GNU tar skips
#   reading file contents when its output is /dev/null, hence the pipe.)
# Prints every run, medians of RUNS runs, the range of the per-iteration
# ratios, peak RSS.
#
# BASELINE=/path/to/an/older/slate times that binary too, in the same
# iterations and on the same device (the order of the three tools rotating),
# and prints how the current build compares with it: "nothing got slower"
# is measured, not assumed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-5}
LOOP_DIO=${LOOP_DIO:-1}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/store.sh: needs root (mmdebstrap, loop mount)" >&2; exit 2; }
command -v ostree >/dev/null || { echo "bench/store.sh: ostree missing: apt-get install ostree" >&2; exit 2; }

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
TREE=$BENCH_DIR/rootfs-v1
(cd "$top" && cargo build --release -q)
SLATE=$top/target/release/slate
BASELINE=${BASELINE:-}
echo "slate: $($SLATE --version); $(ostree --version | sed -n 's/.*Version: //p' | tr -d "'" | head -1 | sed 's/^/ostree /')"
[[ -z $BASELINE ]] || echo "baseline: $BASELINE ($($BASELINE --version))"

work=$(mktemp -d "${TMPDIR:-/tmp}/slate-bench-store.XXXXXX")
mnt=$work/mnt
dev=
detach() {
  umount "$mnt" 2>/dev/null || true
  if [[ -n $dev ]]; then losetup -d "$dev" 2>/dev/null || true; fi
  dev=
}
cleanup() { detach; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$mnt"
echo "writing the 3 GiB filesystem image..."
dd if=/dev/zero of="$work/fs.img" bs=4M count=768 conv=fsync status=none

# warm DIR...: read every file's content, so the run that follows finds it
# in the page cache.
warm() { for d in "$@"; do tar -C "$d" -cf - . | cat >/dev/null; done; }

results=$work/results
: >"$results"
# run NAME COMMAND...: time one run, record "NAME seconds maxrss_kb
# iteration". WARM names what to read first; WARM=(cold) drops every cache
# instead.
run() {
  local name=$1; shift
  sync; sleep 1
  if [[ ${WARM[0]} == cold ]]; then
    echo 3 >/proc/sys/vm/drop_caches
  else
    warm "${WARM[@]}"
  fi
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  echo "$name $(cat "$work/t") $i" >>"$results"
}
# pair A B [C]: run the shell functions A and B, in this order on odd
# iterations and in the other on even ones; with a baseline, C too, the
# three in an order that rotates from one iteration to the next.
pair() {
  if [[ -n $BASELINE && -n ${3:-} ]]; then
    case $(( i % 3 )) in
      0) "$1"; "$2"; "$3" ;;
      1) "$2"; "$3"; "$1" ;;
      *) "$3"; "$1"; "$2" ;;
    esac
  elif (( i % 2 )); then "$1"; "$2"; else "$2"; "$1"; fi
}

for i in $(seq "$RUNS"); do
  echo "iteration $i of $RUNS..."
  detach
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$work/fs.img"
  if [[ $LOOP_DIO == 1 ]]; then
    dev=$(losetup -f --show --direct-io=on "$work/fs.img")
  else
    dev=$(losetup -f --show "$work/fs.img")
  fi
  mount "$dev" "$mnt"
  cp -a "$TREE" "$mnt/tree"   # for `cp -al`, which needs the same filesystem
  for c in hot cold; do
    "$SLATE" init --repo "$mnt/s-bu-$c" --mode bare-user 2>/dev/null
    ostree init --repo="$mnt/o-bu-$c" --mode=bare-user
    "$SLATE" init --repo "$mnt/s-ar-$c" --mode archive 2>/dev/null
    ostree init --repo="$mnt/o-ar-$c" --mode=archive
    if [[ -n $BASELINE ]]; then
      "$BASELINE" init --repo "$mnt/b-bu-$c" --mode bare-user 2>/dev/null
      "$BASELINE" init --repo "$mnt/b-ar-$c" --mode archive 2>/dev/null
    fi
  done
  for c in hot cold; do
    if [[ $c == hot ]]; then WARM=("$TREE"); else WARM=(cold); fi
    s_bu() { run "slate-commit-bare-user-$c" "$SLATE" commit --repo "$mnt/s-bu-$c" -b main --timestamp 0 "$TREE"; }
    o_bu() { run "ostree-commit-bare-user-$c" ostree commit --repo="$mnt/o-bu-$c" -b main "$TREE"; }
    s_ar() { run "slate-commit-archive-$c" "$SLATE" commit --repo "$mnt/s-ar-$c" -b main --timestamp 0 "$TREE"; }
    o_ar() { run "ostree-commit-archive-$c" ostree commit --repo="$mnt/o-ar-$c" -b main "$TREE"; }
    s_re() { run "slate-recommit-$c" "$SLATE" commit --repo "$mnt/s-bu-$c" -b main --timestamp 1 "$TREE"; }
    o_re() { run "ostree-recommit-$c" ostree commit --repo="$mnt/o-bu-$c" -b main "$TREE"; }
    b_bu() { run "before-commit-bare-user-$c" "$BASELINE" commit --repo "$mnt/b-bu-$c" -b main --timestamp 0 "$TREE"; }
    b_ar() { run "before-commit-archive-$c" "$BASELINE" commit --repo "$mnt/b-ar-$c" -b main --timestamp 0 "$TREE"; }
    b_re() { run "before-recommit-$c" "$BASELINE" commit --repo "$mnt/b-bu-$c" -b main --timestamp 1 "$TREE"; }
    pair s_bu o_bu b_bu; pair s_ar o_ar b_ar; pair s_re o_re b_re
  done
  s_fs() { WARM=("$mnt/s-bu-hot"); run slate-fsck "$SLATE" fsck --repo "$mnt/s-bu-hot"; }
  o_fs() { WARM=("$mnt/o-bu-hot"); run ostree-fsck ostree fsck --repo="$mnt/o-bu-hot"; }
  # Both to a file through standard output (`-o` would add an fsync).
  s_ex() { WARM=("$mnt/s-bu-hot"); run slate-export sh -c "'$SLATE' export --repo '$mnt/s-bu-hot' main > '$mnt/s.tar'"; }
  o_ex() { WARM=("$mnt/o-bu-hot"); run ostree-export sh -c "ostree export --repo='$mnt/o-bu-hot' main > '$mnt/o.tar'"; }
  s_co() { WARM=("$mnt/s-bu-hot"); run slate-checkout "$SLATE" checkout --repo "$mnt/s-bu-hot" main "$mnt/co-s"; }
  o_co() { WARM=("$mnt/o-bu-hot"); run ostree-checkout ostree checkout --repo="$mnt/o-bu-hot" -U main "$mnt/co-o"; }
  b_fs() { WARM=("$mnt/b-bu-hot"); run before-fsck "$BASELINE" fsck --repo "$mnt/b-bu-hot"; }
  b_ex() { WARM=("$mnt/b-bu-hot"); run before-export sh -c "'$BASELINE' export --repo '$mnt/b-bu-hot' main > '$mnt/b.tar'"; }
  b_co() { WARM=("$mnt/b-bu-hot"); run before-checkout "$BASELINE" checkout --repo "$mnt/b-bu-hot" main "$mnt/co-b"; }
  pair s_co o_co b_co; pair s_fs o_fs b_fs; pair s_ex o_ex b_ex
  WARM=("$mnt/tree"); run cp-al cp -al "$mnt/tree" "$mnt/co-cp"
  echo "$(du -sb "$mnt/s-ar-hot" | cut -f1) $(du -sb "$mnt/o-ar-hot" | cut -f1)" >"$work/sizes"
done
python3 - "$results" "$work/sizes" "$LOOP_DIO" <<'PY'
import sys, statistics, collections
t = collections.defaultdict(dict); m = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, secs, rss, it = line.split()
    t[name][int(it)] = float(secs); m[name].append(int(rss))
med = {k: statistics.median(v.values()) for k, v in t.items()}
for k in sorted(t):
    print(f"  {k:<30} runs: " + " ".join(f"{t[k][i]:.2f}" for i in sorted(t[k])))
rss = {k: max(v) / 1024 for k, v in m.items()}
s_size, o_size = map(int, open(sys.argv[2]).read().split())
print(f"{'work':<30}{'slate':>7}{'peer':>8}{'ratio':>7}  {'per-iteration ratios':<30}{'RSS':>8}  target")
def row(label, s, p, target, mem=True):
    ratio = med[p] / med[s]
    pairs = sorted(t[p][i] / t[s][i] for i in t[s] if i in t[p])
    spread = f"{pairs[0]:.1f}x-{pairs[-1]:.1f}x (median {statistics.median(pairs):.1f}x)"
    rss_col = f"{rss[s]:.0f} MiB" if mem else ""
    print(f"{label:<30}{med[s]:>6.2f}s{med[p]:>7.2f}s{ratio:>6.1f}x  {spread:<30}{rss_col:>8}  {target}")
for c in ("hot", "cold"):
    row(f"commit bare-user, {c}", f"slate-commit-bare-user-{c}", f"ostree-commit-bare-user-{c}", ">= 4x")
    row(f"commit archive, {c}", f"slate-commit-archive-{c}", f"ostree-commit-archive-{c}", ">= 5x")
    row(f"commit unchanged tree, {c}", f"slate-recommit-{c}", f"ostree-recommit-{c}", ">= 6x")
row("hard-link checkout", "slate-checkout", "ostree-checkout", ">= 1.5x")
row("fsck (bare-user)", "slate-fsck", "ostree-fsck", ">= 3x")
row("export to a tar file", "slate-export", "ostree-export", ">= 1x")
row("checkout against cp -al", "slate-checkout", "cp-al", ">= 0.67x (within 1.5x of cp -al)", mem=False)
print(f"archive repository size: slate {s_size/1e6:.1f} MB, ostree {o_size/1e6:.1f} MB, ratio {s_size/o_size:.2f} (target <= 0.8)")
print(f"runs per figure: {len(t['slate-commit-bare-user-hot'])} (medians); loop device direct I/O: {'on' if sys.argv[3] == '1' else 'off'}")
if 'before-fsck' in t:
    print()
    print(f"{'this build against BASELINE':<30}{'now':>7}{'before':>8}{'ratio':>7}  {'per-iteration ratios':<30}{'RSS':>8}  target")
    for c in ("hot", "cold"):
        row(f"commit bare-user, {c}", f"slate-commit-bare-user-{c}", f"before-commit-bare-user-{c}", ">= 1 (no slower)")
        row(f"commit archive, {c}", f"slate-commit-archive-{c}", f"before-commit-archive-{c}", ">= 1")
        row(f"commit unchanged tree, {c}", f"slate-recommit-{c}", f"before-recommit-{c}", ">= 1")
    row("hard-link checkout", "slate-checkout", "before-checkout", ">= 1")
    row("fsck (bare-user)", "slate-fsck", "before-fsck", ">= 1")
    row("export to a tar file", "slate-export", "before-export", ">= 1")
PY
