#!/usr/bin/env bash
# slate compose against mmdebstrap alone, building the same package set in
# the same run (the example image: examples/debian/image.toml).
#
#   mm      mmdebstrap --mode=root --variant=minbase --include=PKGS bookworm DIR, with
#           the dracut settings compose gives an image (hostonly="no",
#           reproducible="yes": the same initrd is built; a host-only one from a
#           chroot would not boot)
#   cold    slate compose with an empty cache and no lockfile (packages from
#           the mirror, as mmdebstrap's), into a fresh repository
#   locked  slate compose --locked --no-tree-cache: mmdebstrap against the
#           package cache alone (no mirror), the full transformation and commit
#   warm    slate compose again with the unchanged lockfile and a warm cache, into
#           the same repository (the tree cache; the commit is the cold one's:
#           nothing changed, so nothing is committed)
#
# Prints each run, the medians and the ratios: compose's own overhead over
# mmdebstrap (cold / mm - 1; also compose's steps after mmdebstrap over the mm
# time) and warm / cold. mm and cold alternate which goes first.
# Needs root, mmdebstrap and a Debian mirror. RUNS=N (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/compose.sh: needs root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "bench/compose.sh: needs mmdebstrap" >&2; exit 1; }
RUNS=${RUNS:-3}
SLATE=${SLATE:-target/release/slate}
[[ -x $SLATE ]] || cargo build --release --quiet
SLATE=$(realpath "$SLATE")
MANIFEST=$(realpath "${MANIFEST:-examples/debian/image.toml}")
W=${BENCH_DIR:-/var/tmp/slate-bench-compose}
rm -rf "$W"; mkdir -p "$W"
export SOURCE_DATE_EPOCH=1700000000
PKGS=$(python3 - "$MANIFEST" <<'PY'
import sys, tomllib
m = tomllib.load(open(sys.argv[1], 'rb'))
print(",".join(m["input"][0].get("packages", [])))
PY
)
now() { date +%s.%N; }
declare -a MM COLD LOCKED WARM OWN
run_mm() {
  local d=$W/mm; rm -rf "$d"
  local t0; t0=$(now)
  mmdebstrap --mode=root --variant=minbase --include="$PKGS" \
    --setup-hook='mkdir -p "$1/etc/dracut.conf.d" && printf "%s\n" "hostonly=\"no\"" "reproducible=\"yes\"" > "$1/etc/dracut.conf.d/50-slate.conf"' \
    bookworm "$d" </dev/null >"$W/mm.log" 2>&1
  MM+=("$(echo "$(now) - $t0" | bc)")
  rm -rf "$d"
}
run_cold() {
  rm -rf "$W/cache" "$W/repo" "$W/image.lock"
  "$SLATE" init --repo "$W/repo" --mode bare >/dev/null
  local t0; t0=$(now)
  "$SLATE" compose --repo "$W/repo" --cache-dir "$W/cache" --lockfile "$W/image.lock" --json "$MANIFEST" >"$W/cold.json"
  COLD+=("$(echo "$(now) - $t0" | bc)")
  OWN+=("$(python3 -c "
import json; d=json.load(open('$W/cold.json'))
print(sum(s['seconds'] for s in d['steps'] if not s['name'].startswith('base: mmdebstrap')))")")
}
run_locked() {
  rm -rf "$W/repo2"; "$SLATE" init --repo "$W/repo2" --mode bare >/dev/null
  local t0; t0=$(now)
  "$SLATE" compose --repo "$W/repo2" --cache-dir "$W/cache" --lockfile "$W/image.lock" --locked --no-tree-cache "$MANIFEST" >"$W/locked.id"
  LOCKED+=("$(echo "$(now) - $t0" | bc)")
}
run_warm() {
  local t0; t0=$(now)
  "$SLATE" compose --repo "$W/repo" --cache-dir "$W/cache" --lockfile "$W/image.lock" "$MANIFEST" >"$W/warm.id"
  WARM+=("$(echo "$(now) - $t0" | bc)")
}
for i in $(seq 1 "$RUNS"); do
  if (( i % 2 )); then run_mm; run_cold; else run_cold; run_mm; fi
  run_locked; run_warm
  cold_id=$(python3 -c "import json; print(json.load(open('$W/cold.json'))['id'])")
  [[ $(cat "$W/locked.id") == "$cold_id" && $(cat "$W/warm.id") == "$cold_id" ]] \
    || { echo "run $i: the three composes differ: $cold_id $(cat "$W/locked.id") $(cat "$W/warm.id")" >&2; exit 1; }
  printf 'run %d: mm %.1f s  cold %.1f s (own steps %.1f s)  locked %.1f s  warm %.2f s  commit %s\n' \
    "$i" "${MM[-1]}" "${COLD[-1]}" "${OWN[-1]}" "${LOCKED[-1]}" "${WARM[-1]}" "${cold_id:0:12}"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mm=$(med "${MM[@]}"); cold=$(med "${COLD[@]}"); own=$(med "${OWN[@]}")
locked=$(med "${LOCKED[@]}"); warm=$(med "${WARM[@]}")
echo
echo "medians of $RUNS: mmdebstrap $mm s, compose cold $cold s, locked (package cache) $locked s, warm $warm s"
python3 - "$mm" "$cold" "$own" "$locked" "$warm" <<'PY'
import sys
mm, cold, own, locked, warm = map(float, sys.argv[1:])
print(f"compose cold / mmdebstrap alone: {cold/mm:.3f} (compose's own work adds {100*(cold/mm-1):+.1f} %)")
print(f"compose's own steps (after mmdebstrap) / mmdebstrap alone: {100*own/mm:.1f} %")
print(f"locked from the package cache / cold: {locked/cold:.3f}")
print(f"warm / cold: {warm/cold:.4f} (1/{cold/warm:.0f})")
PY
