#!/usr/bin/env bash
# Benchmark of a verified /usr: `slate admin deploy` of the Debian bench
# tree (rootfs-v2 of /work/shared/bench/make-rootfs.sh) with a plain /usr
# (hard links to the repository) and with a verity /usr (an EROFS image and
# its dm-verity hash tree), into a fresh sysroot on its own ext4 file system
# each time: the deploy's seconds and the disk space it took.
#
#   bench/verity.sh           (root; needs mmdebstrap once, erofs-utils)
#
# The tree is committed first (not timed); the repository's objects are
# not counted. RUNS=N sets the iterations (default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/verity.sh: needs root (loop mount, a bare repository)" >&2; exit 2; }
command -v mkfs.erofs >/dev/null || { echo "bench/verity.sh: mkfs.erofs missing: apt-get install erofs-utils" >&2; exit 2; }

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
SLATE=${SLATE:-$top/target/release/slate}
[[ -x $SLATE ]] || (cd "$top" && cargo build --release -q)
echo "slate: $($SLATE --version); erofs-utils $(dpkg-query -W -f '${Version}' erofs-utils 2>/dev/null)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/slate-bench-verity.XXXXXX")
mnt=$work/mnt
dev=
detach() {
  if mountpoint -q "$mnt"; then umount "$mnt"; fi
  if [[ -n $dev ]]; then losetup -d "$dev" 2>/dev/null || true; fi
  dev=
}
cleanup() { detach; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$mnt"

tree=$work/tree
cp -al "$BENCH_DIR/rootfs-v2" "$tree"
mkdir -p "$tree/usr/lib/modules/6.1.0-bench"
head -c 8M /dev/urandom >"$tree/usr/lib/modules/6.1.0-bench/vmlinuz"
echo "tree: $(du -sh --apparent-size "$tree/usr" | cut -f1) in /usr, $(find "$tree/usr" | wc -l) paths"

dd if=/dev/zero of="$work/fs.img" bs=4M count=768 conv=fsync status=none
results=$work/results
: >"$results"
used() { df --output=used -B1 "$mnt" | tail -1; }

for i in $(seq "$RUNS"); do
  for mode in plain verity; do
    detach
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$work/fs.img"
    dev=$(losetup -f --show --direct-io=on "$work/fs.img")
    mount "$dev" "$mnt"
    S=$mnt/s
    "$SLATE" admin init-fs "$S" >/dev/null 2>&1
    "$SLATE" admin --sysroot "$S" os-init demo --usr "$mode" >/dev/null 2>&1
    "$SLATE" commit --repo "$S/slate/repo" -b demo/v "$tree" >/dev/null 2>&1
    sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1
    before=$(used)
    /usr/bin/time -f "%e" -o "$work/t" "$SLATE" admin --sysroot "$S" deploy --karg root=/dev/vda demo/v \
      >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    sync
    after=$(used)
    echo "$mode $(cat "$work/t") $((after - before)) $i" >>"$results"
  done
done
detach

python3 - "$results" <<'PY'
import sys, statistics
runs = {}
for name, secs, used, it in (l.split() for l in open(sys.argv[1])):
    runs.setdefault(name, []).append((float(secs), int(used)))
for name in ("plain", "verity"):
    r = runs[name]
    print(f"  {name:7} deploy: median {statistics.median(s for s, _ in r):.2f} s, "
          f"disk {statistics.median(u for _, u in r) / 1e6:.1f} MB   runs: "
          + " ".join(f"{s:.2f}s/{u/1e6:.1f}MB" for s, u in r))
PY
