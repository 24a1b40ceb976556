#!/usr/bin/env bash
# Benchmark of delivery over HTTP: `slate pull` against `ostree pull`, both
# from the same static server (../shared/bench/countserve.py, HTTP/1.1,
# loopback), which counts requests and bytes; on the Debian trees v1 and v2.
#
#   bench/pull.sh             (root; needs ostree, mmdebstrap, bsdiff, xz; builds the trees once)
#
# Setup (not timed): an archive repository of each tool with v1 committed,
# a summary (Slate's signed; ostree's unsigned), a server for each.
# Timed, RUNS times each, the tools alternating which goes first:
#   1. full pull of v1 into a fresh bare-user repository;
#   2. delta generation v1 -> v2 (`slate delta generate`, `ostree
#      static-delta generate`), then the pull of v2 into a repository that
#      has v1 (it uses the delta);
#   3. once: v2 committed again with nothing changed, the summary updated,
#      and the pull of that rebuild (requests and bytes).
# The floor of per-file methods is measured in the same run: bsdiff (bzip2)
# of each changed file against its old version plus `xz -9e` of the new
# files. Prints every run, the medians, the ratios and the targets.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/slate-bench}
shared=${SHARED:-$top/../shared}

[[ $(id -u) == 0 ]] || { echo "bench/pull.sh: needs root (ostree commits of a root file system)" >&2; exit 2; }
for t in ostree bsdiff xz python3; do
  command -v $t >/dev/null || { echo "bench/pull.sh: $t missing: apt-get install ostree bsdiff xz-utils python3" >&2; exit 2; }
done

BENCH_DIR=$BENCH_DIR bash "$shared/bench/make-rootfs.sh" "$BENCH_DIR" >/dev/null
V1=$BENCH_DIR/rootfs-v1
V2=$BENCH_DIR/rootfs-v2
(cd "$top" && cargo build --release -q)
SLATE=$top/target/release/slate
echo "slate: $($SLATE --version); $(ostree --version | sed -n 's/.*Version: //p' | tr -d "'" | head -1 | sed 's/^/ostree /')"

work=$(mktemp -d "${BENCH_DIR}/pull-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
results=$work/results.txt
: >"$results"

# Publishers.
spub=$work/spub
opub=$work/opub
key=$work/key.pem
$SLATE init --repo "$spub" --mode archive >/dev/null 2>&1
$SLATE keygen "$key" >/dev/null 2>&1
$SLATE commit --repo "$spub" -b os/main -s v1 "$V1" >/dev/null 2>&1
$SLATE sign --repo "$spub" os/main --key "$key" >/dev/null 2>&1
$SLATE summary --repo "$spub" --update --sign "$key" >/dev/null 2>&1
ostree init --repo="$opub" --mode=archive
ostree commit --repo="$opub" -b os/main -s v1 "$V1" >/dev/null
ostree summary --repo="$opub" -u

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
slog=$work/slate-server.log
olog=$work/ostree-server.log
sport=$(port)
python3 "$shared/bench/countserve.py" "$spub" "$sport" "$slog" --http11 & pids+=($!)
oport=$(port)
python3 "$shared/bench/countserve.py" "$opub" "$oport" "$olog" --http11 & pids+=($!)
sleep 1

# run NAME LOG CMD...: time CMD (after a sync and a cache drop), record
# seconds, requests and bytes the server saw.
run() {
  local name=$1 log=$2; shift 2
  sync; echo 3 >/proc/sys/vm/drop_caches
  : >"$log"
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; echo "bench/pull.sh: $name failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  local req bytes
  req=$(wc -l <"$log")
  bytes=$(awk '{s+=$4} END {print s+0}' "$log")
  echo "$name $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') $req $bytes" | tee -a "$results"
}
nolog=$work/none.log

fresh_slate() {
  rm -rf "$work/slocal"
  $SLATE init --repo "$work/slocal" --mode bare-user >/dev/null 2>&1
  $SLATE remote --repo "$work/slocal" add origin "http://127.0.0.1:$sport" --sign-verify "$key.pub" >/dev/null 2>&1
}
fresh_ostree() {
  rm -rf "$work/olocal"
  ostree init --repo="$work/olocal" --mode=bare-user
  ostree remote add --repo="$work/olocal" --no-gpg-verify origin "http://127.0.0.1:$oport"
}

echo "== full pull of v1"
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then order="slate ostree"; else order="ostree slate"; fi
  for t in $order; do
    if [[ $t == slate ]]; then
      fresh_slate
      run slate-full "$slog" $SLATE pull --repo "$work/slocal" origin os/main
    else
      fresh_ostree
      run ostree-full "$olog" ostree pull --repo="$work/olocal" origin os/main
    fi
  done
done

echo "== v2: delta generation"
$SLATE commit --repo "$spub" -b os/main -s v2 "$V2" >/dev/null 2>&1
$SLATE sign --repo "$spub" os/main --key "$key" >/dev/null 2>&1
ostree commit --repo="$opub" -b os/main -s v2 "$V2" >/dev/null
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then order="slate ostree"; else order="ostree slate"; fi
  for t in $order; do
    if [[ $t == slate ]]; then
      run slate-gen "$nolog" $SLATE delta generate --repo "$spub" --from os/main^ --to os/main
    else
      rm -rf "$opub/deltas"
      run ostree-gen "$nolog" ostree static-delta generate --repo="$opub" --from=os/main^ --to=os/main
    fi
  done
done
# The smallest setting (patches at zstd level 19), once, for its size.
run slate-gen-p19 "$nolog" $SLATE delta generate --repo "$spub" --from os/main^ --to os/main --patch-level 19
sdelta19=$(find "$spub/deltas" -name '*.delta' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "delta-size-p19 $sdelta19" | tee -a "$results"
$SLATE delta generate --repo "$spub" --from os/main^ --to os/main >/dev/null 2>&1
sdelta=$(find "$spub/deltas" -name '*.delta' -printf '%s\n' | awk '{s+=$1} END {print s}')
odelta=$(du -sb "$opub/deltas" | cut -f1)
echo "delta-size slate $sdelta ostree $odelta" | tee -a "$results"
$SLATE summary --repo "$spub" --update --sign "$key" >/dev/null 2>&1
ostree summary --repo="$opub" -u

echo "== pull of v2 with the delta"
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then order="slate ostree"; else order="ostree slate"; fi
  for t in $order; do
    if [[ $t == slate ]]; then
      fresh_slate
      # v1 from the publisher's history, not timed.
      $SLATE pull-local --repo "$work/slocal" "$spub" os/main^ >/dev/null 2>&1
      $SLATE refs --repo "$work/slocal" --create remotes/origin/os/main "$($SLATE rev-parse --repo "$spub" os/main^)" >/dev/null 2>&1
      run slate-delta "$slog" $SLATE pull --repo "$work/slocal" origin os/main
    else
      fresh_ostree
      ostree pull-local --repo="$work/olocal" "$opub" "$(ostree rev-parse --repo="$opub" os/main^)" >/dev/null
      ostree refs --repo="$work/olocal" --create=origin:os/main "$(ostree rev-parse --repo="$opub" os/main^)"
      run ostree-delta "$olog" ostree pull --repo="$work/olocal" origin os/main
    fi
  done
done

echo "== v2 rebuilt with nothing changed"
$SLATE commit --repo "$spub" -b os/main -s v2-rebuild "$V2" >/dev/null 2>&1
$SLATE sign --repo "$spub" os/main --key "$key" >/dev/null 2>&1
$SLATE summary --repo "$spub" --update --sign "$key" >/dev/null 2>&1
ostree commit --repo="$opub" -b os/main -s v2-rebuild "$V2" >/dev/null
ostree summary --repo="$opub" -u
run slate-rebuild "$slog" $SLATE pull --repo "$work/slocal" origin os/main
run ostree-rebuild "$olog" ostree pull --repo="$work/olocal" origin os/main

echo "== floor of per-file methods (bsdiff of changed files + xz -9e of new files)"
python3 - "$V1" "$V2" "$work" <<'EOF' | tee -a "$results"
import os, subprocess, sys, time
v1, v2, work = sys.argv[1:4]
def files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, root)] = p
    return out
a, b = files(v1), files(v2)
changed = [p for p in b if p in a and open(a[p], 'rb').read() != open(b[p], 'rb').read()]
new = sorted(p for p in b if p not in a)
t = time.time()
bs = 0
for p in changed:
    out = os.path.join(work, 'patch')
    subprocess.run(['bsdiff', a[p], b[p], out], check=True)
    bs += os.path.getsize(out)
cat = os.path.join(work, 'new.bin')
with open(cat, 'wb') as o:
    for p in new:
        o.write(open(b[p], 'rb').read())
xz = len(subprocess.run(['xz', '-9e', '-T1', '-c', cat], check=True, capture_output=True).stdout)
print(f"floor {bs} {xz} changed {len(changed)} new {len(new)}")
EOF

python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
extra = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == 'delta-size-p19':
        extra['sdelta19'] = int(f[1])
    elif f[0] == 'delta-size':
        extra['sdelta'], extra['odelta'] = int(f[2]), int(f[4])
    elif f[0] == 'floor':
        extra['bsdiff'], extra['xz'] = int(f[1]), int(f[2])
    else:
        rows.setdefault(f[0], []).append((float(f[1]), int(f[2]), int(f[3])))
def med(name, i=0):
    return statistics.median(r[i] for r in rows[name])
print()
print(f"{'work':34} {'slate':>10} {'ostree':>10} {'ratio':>7}  target")
def row(label, s, o, target):
    ts, to = med(s), med(o)
    print(f"{label:34} {ts:9.2f}s {to:9.2f}s {to/ts:6.1f}x  {target}")
row("full pull of v1", "slate-full", "ostree-full", ">= 4x")
print(f"{'  requests':34} {med('slate-full',1):10.0f} {med('ostree-full',1):10.0f}          slate <= 50")
print(f"{'  MB fetched':34} {med('slate-full',2)/1e6:10.1f} {med('ostree-full',2)/1e6:10.1f}")
row("delta generation v1->v2", "slate-gen", "ostree-gen", ">= 5x")
row("pull of v2 with the delta", "slate-delta", "ostree-delta", ">= 3x")
print(f"{'  requests':34} {med('slate-delta',1):10.0f} {med('ostree-delta',1):10.0f}")
print(f"{'  MB fetched':34} {med('slate-delta',2)/1e6:10.2f} {med('ostree-delta',2)/1e6:10.2f}")
s, o = extra['sdelta'], extra['odelta']
floor = extra['bsdiff'] + extra['xz']
print(f"delta size: slate {s/1e6:.2f} MB, ostree {o/1e6:.2f} MB (slate/ostree {s/o:.3f}; target <= 1)")
s19 = extra['sdelta19']
g19 = rows['slate-gen-p19'][0][0]
print(f"  with --patch-level 19: {s19/1e6:.2f} MB (slate/ostree {s19/o:.3f}), generated in {g19:.2f} s ({med('ostree-gen')/g19:.1f}x ostree)")
print(f"floor (bsdiff {extra['bsdiff']/1e6:.2f} MB + xz -9e {extra['xz']/1e6:.2f} MB) = {floor/1e6:.2f} MB; slate/floor {s/floor:.3f} (target <= 1.10)")
for t in ("slate", "ostree"):
    r = rows[f"{t}-rebuild"][0]
    print(f"rebuild with nothing changed, {t}: {r[1]} requests, {r[2]} bytes, {r[0]:.2f} s")
EOF
