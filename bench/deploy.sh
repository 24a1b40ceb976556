#!/usr/bin/env bash
# Benchmark of `slate admin deploy` against `ostree admin deploy`: the second
# deployment (Debian rootfs-v2 after rootfs-v1, with a local /etc change to
# merge), on identically prepared sysroots, in the same run.
#
#   bench/deploy.sh           (root; needs ostree, mmdebstrap; builds the trees once)
#
# Both trees get the same stand-in kernel (8 MB) and initrd (30 MB) under
# /usr/lib/modules/KVER/; ostree's copies have /etc moved to /usr/etc, as
# ostree wants. Each iteration makes a fresh ext4 file system on a loop
# device (direct I/O, as bench/store.sh), and for each tool: a sysroot, a
# commit of v1 and its deployment, a local /etc edit, a commit of v2 (none
# of this timed), a sync, then the timed deploy of v2, and the disk space it
# took (df before and after). The tools alternate which goes first.
# Prints every run, the medians, the range of the per-iteration ratios, and
# the size of what changed between v1 and v2, against which the second
# deployment's space is judged. RUNS=N sets the iterations (default 5).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-5}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/deploy.sh: needs root (ostree admin, loop mount)" >&2; exit 2; }
command -v ostree >/dev/null || { echo "bench/deploy.sh: ostree missing: apt-get install ostree" >&2; exit 2; }

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
(cd "$top" && cargo build --release -q)
SLATE=$top/target/release/slate
echo "slate: $($SLATE --version); $(ostree --version | sed -n 's/.*Version: //p' | tr -d "'" | head -1 | sed 's/^/ostree /')"

work=$(mktemp -d "${TMPDIR:-/tmp}/slate-bench-deploy.XXXXXX")
mnt=$work/mnt
dev=
detach() {
  if mountpoint -q "$mnt"; then
    chattr -R -i "$mnt" 2>/dev/null || true
    umount "$mnt"
  fi
  if [[ -n $dev ]]; then losetup -d "$dev" 2>/dev/null || true; fi
  dev=
}
cleanup() { detach; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$mnt"

# The trees: hard-linked copies of rootfs-v1/v2 with the stand-in kernel.
kver=6.1.0-bench
head -c 8M /dev/urandom >"$work/vmlinuz"
head -c 30M /dev/urandom >"$work/initrd"
for v in 1 2; do
  for t in s o; do
    d=$work/t$v$t
    cp -al "$BENCH_DIR/rootfs-v$v" "$d"
    mkdir -p "$d/usr/lib/modules/$kver"
    cp "$work/vmlinuz" "$d/usr/lib/modules/$kver/vmlinuz"
    cp "$work/initrd" "$d/usr/lib/modules/$kver/initramfs.img"
    [[ $t == o ]] && mv "$d/etc" "$d/usr/etc"
  done
done

# What changed from v1 to v2: bytes of the files added or modified.
"$SLATE" init --repo "$work/diffrepo" --mode bare-user >/dev/null 2>&1
"$SLATE" commit --repo "$work/diffrepo" -b v1 "$work/t1s" >/dev/null 2>&1
"$SLATE" commit --repo "$work/diffrepo" -b v2 "$work/t2s" >/dev/null 2>&1
changed=$("$SLATE" diff --repo "$work/diffrepo" --json v1 v2 | python3 -c '
import json, os, sys
root = sys.argv[1]
n = 0
for e in json.load(sys.stdin):
    if e["change"] in ("added", "modified") and not e["dir"]:
        p = os.path.join(root, e["path"].lstrip("/"))
        if os.path.isfile(p) and not os.path.islink(p):
            n += os.path.getsize(p)
print(n)' "$work/t2s")
rm -rf "$work/diffrepo"

echo "writing the 3 GiB filesystem image..."
dd if=/dev/zero of="$work/fs.img" bs=4M count=768 conv=fsync status=none
results=$work/results
: >"$results"
used() { df --output=used -B1 "$mnt" | tail -1; }
# timed NAME COMMAND...: record "NAME seconds bytes iteration".
timed() {
  local name=$1; shift
  sync; sleep 1
  local before after
  before=$(used)
  /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  sync
  after=$(used)
  echo "$name $(cat "$work/t") $((after - before)) $i" >>"$results"
}

slate_run() {
  local S=$mnt/s
  "$SLATE" admin init-fs "$S" >/dev/null 2>&1
  "$SLATE" admin --sysroot "$S" os-init demo >/dev/null 2>&1
  "$SLATE" commit --repo "$S/slate/repo" -b demo/v "$work/t1s" >/dev/null 2>&1
  "$SLATE" admin --sysroot "$S" deploy --karg root=/dev/vda demo/v >/dev/null 2>&1
  local dep; dep=$(ls -d "$S"/slate/deploy/demo/*/ | head -1)
  echo "custom=1" >"$dep/etc/local.conf"
  "$SLATE" commit --repo "$S/slate/repo" -b demo/v "$work/t2s" >/dev/null 2>&1
  timed slate-deploy "$SLATE" admin --sysroot "$S" deploy demo/v
  grep -q custom=1 "$(ls -d "$S"/slate/deploy/demo/*.2/)/etc/local.conf" || { echo "slate: /etc not merged" >&2; exit 1; }
}
ostree_run() {
  local S=$mnt/o
  mkdir -p "$S"
  ostree admin init-fs "$S" >/dev/null 2>&1
  ostree admin os-init --sysroot="$S" demo >/dev/null
  ostree --repo="$S/ostree/repo" commit -b demo/v --tree=dir="$work/t1o" >/dev/null 2>&1
  ostree admin deploy --sysroot="$S" --os=demo --karg=root=/dev/vda demo/v >/dev/null 2>&1
  local dep; dep=$(ls -d "$S"/ostree/deploy/demo/deploy/*.0 | head -1)
  echo "custom=1" >"$dep/etc/local.conf"
  ostree --repo="$S/ostree/repo" commit -b demo/v --tree=dir="$work/t2o" >/dev/null 2>&1
  timed ostree-deploy ostree admin deploy --sysroot="$S" --os=demo demo/v
}

for i in $(seq "$RUNS"); do
  echo "iteration $i of $RUNS..."
  detach
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$work/fs.img"
  dev=$(losetup -f --show --direct-io=on "$work/fs.img")
  mount "$dev" "$mnt"
  if (( i % 2 )); then slate_run; ostree_run; else ostree_run; slate_run; fi
done

python3 - "$results" "$changed" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
changed = int(sys.argv[2])
runs = {}
for name, secs, used, it in rows:
    runs.setdefault(name, []).append((int(it), float(secs), int(used)))
for name in sorted(runs):
    print(f"  {name:15} runs: " + " ".join(f"{s:.2f}s/{u/1e6:.1f}MB" for _, s, u in sorted(runs[name])))
s = {it: t for it, t, _ in runs["slate-deploy"]}
o = {it: t for it, t, _ in runs["ostree-deploy"]}
ratios = sorted(o[k] / s[k] for k in s if k in o and s[k] > 0)
ms, mo = statistics.median(s.values()), statistics.median(o.values())
us = statistics.median(u for _, _, u in runs["slate-deploy"])
uo = statistics.median(u for _, _, u in runs["ostree-deploy"])
print(f"second deployment (v2 after v1, /etc merged): slate {ms:.2f}s, ostree {mo:.2f}s, "
      f"ratio {mo/ms:.1f}x (per iteration {ratios[0]:.1f}x-{ratios[-1]:.1f}x; target >= 2x)")
print(f"disk space it took: slate {us/1e6:.1f} MB, ostree {uo/1e6:.1f} MB; "
      f"the files added or changed from v1 to v2: {changed/1e6:.1f} MB (target: slate <= that)")
EOF
