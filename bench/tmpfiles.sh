#!/usr/bin/env bash
# slate tmpfiles against systemd-tmpfiles on the complete tmpfiles.d set of a
# real Debian system: `--create --boot --root=R` into a root that holds only
# /usr (and, as a second figure, /usr plus the image's /etc/passwd and
# /etc/group, so that every user and group resolves). Each run gets a fresh
# root (a hard-linked copy of /usr, made outside the timing); the tools
# alternate, and the script prints the median of each and the ratio
# systemd / slate (above 1 means Slate is faster). It also checks that both
# left the same tree and exit status.
#
# Usage: bench/tmpfiles.sh [DATA_DIR]   (RUNS=N runs per figure, default 40)
# Needs root, systemd-tmpfiles, and the Debian tree of
# ../shared/bench/make-rootfs.sh (built on first use; mmdebstrap).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="$(cd "$HERE/.." && pwd)"
DATA="${1:-${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}}"
RUNS="${RUNS:-40}"

[ "$(id -u)" = 0 ] || { echo "bench/tmpfiles.sh needs root (owners, devices)" >&2; exit 1; }
command -v systemd-tmpfiles >/dev/null || { echo "systemd-tmpfiles is not installed" >&2; exit 1; }
if [ ! -e "$DATA/rootfs-v1.done" ]; then
  bash "$PROJECT/../shared/bench/make-rootfs.sh" "$DATA"
fi
ROOTFS="$DATA/rootfs-v1"

(cd "$PROJECT" && cargo build --release --locked -q)
SLATE="$PROJECT/target/release/slate"
WORK="$(mktemp -d "$DATA/tmpfiles-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "rules: $(ls "$ROOTFS/usr/lib/tmpfiles.d" | wc -l) files, $(cat "$ROOTFS"/usr/lib/tmpfiles.d/*.conf | grep -cv '^\s*\(#\|$\)') lines; systemd $(systemd-tmpfiles --version | head -1 | cut -d' ' -f2-)"

python3 - "$ROOTFS" "$WORK" "$SLATE" "$RUNS" <<'PY'
import os, shutil, statistics, subprocess, sys, time
rootfs, work, slate, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def fresh(path, users):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    subprocess.run(["cp", "-al", os.path.join(rootfs, "usr"), os.path.join(path, "usr")], check=True)
    if users:
        os.makedirs(os.path.join(path, "etc"))
        for f in ("passwd", "group"):
            shutil.copy2(os.path.join(rootfs, "etc", f), os.path.join(path, "etc", f))

def tree(path):
    out = []
    for d, dirs, files in os.walk(path):
        if d.startswith(os.path.join(path, "usr")):
            dirs[:] = []
            continue
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_mode, st.st_uid, st.st_gid,
                        os.readlink(p) if os.path.islink(p) else None))
    return sorted(out)

tools = {"systemd": ["systemd-tmpfiles"], "slate": [slate, "tmpfiles"]}
for users in (False, True):
    label = "root with /usr and /etc/passwd,group" if users else "root with only /usr"
    times = {k: [] for k in tools}
    results = {}
    for i in range(runs):
        order = list(tools) if i % 2 == 0 else list(reversed(tools))
        for name in order:
            root = os.path.join(work, name)
            fresh(root, users)
            cmd = tools[name] + ["--create", "--boot", "--root=" + root]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t0)
            if i == 0:
                results[name] = (p.returncode, tree(root))
    same = results["systemd"] == results["slate"]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{label}: {len(results['slate'][1])} paths created, exit {results['slate'][0]}, "
          f"same tree and status as systemd: {'yes' if same else 'NO'}")
    print(f"  systemd-tmpfiles {med['systemd']*1000:7.2f} ms   slate {med['slate']*1000:7.2f} ms   "
          f"ratio {med['systemd']/med['slate']:.2f}x (median of {runs})")
    if not same:
        sys.exit(1)
PY
