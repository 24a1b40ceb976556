#!/usr/bin/env bash
# Slate's end-to-end test: a machine's life in a real virtual machine (QEMU,
# OVMF, systemd-boot, a dracut initrd, systemd), checked over serial markers.
# Opt-in: it takes minutes and needs root, mmdebstrap and a Debian mirror,
# QEMU (SLATE_QEMU, qemu-system-x86_64 on the PATH, or get-qemu.sh), ovmf,
# systemd-boot-efi, fdisk, dosfstools, mtools:
#
#   cargo build --release && sudo tests/e2e/run.sh
#
# Each step prints its time; a failed step prints the last console lines.
#   1. compose v1 (stateless /etc, persistent /var), install it on a disk, boot:
#      multi-user.target reached, no failed unit, /usr read-only, /etc a tmpfs
#      built from the factory defaults, the boot blessed by systemd-boot.
# The steps that follow (an upgrade over HTTP, a bad update the boot loader
# rolls back, a factory reset of /var, a rollback) are still to be written.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${E2E_DIR:-/var/tmp/slate-e2e}
skip() { echo "SKIPPED: $*"; exit 0; }
[[ $(id -u) == 0 ]] || skip "the end-to-end test needs root"
for t in mmdebstrap sfdisk mkfs.vfat mcopy mkfs.ext4; do
  command -v "$t" >/dev/null || skip "$t is not installed"
done
[[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ]] || skip "ovmf is not installed"
[[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] || skip "systemd-boot-efi is not installed"
SLATE=$(realpath "${SLATE:-target/release/slate}")
[[ -x $SLATE ]] || skip "build first: cargo build --release"
mkdir -p "$W"
if [[ -z ${SLATE_QEMU:-} ]] && ! command -v qemu-system-x86_64 >/dev/null; then
  SLATE_QEMU=$(bash tests/e2e/get-qemu.sh "$W/qemu") || skip "no QEMU here, and none could be unpacked"
fi
export SLATE_QEMU
export SOURCE_DATE_EPOCH=1700000000
export SLATE_CACHE_DIR=$W/cache
REPO=$W/repo
DISK=$W/disk.img
[[ -d $REPO ]] || "$SLATE" init --repo "$REPO" --mode archive >/dev/null

t0=0
step() { t0=$(date +%s); echo "== step $1"; }
done_step() { echo "   ok in $(( $(date +%s) - t0 )) s"; }
console() { tr -d '\000' < "$W/console.log" | sed 's/\x1b\[[0-9;]*[a-zA-Z]//g' | grep -av '^\s*$' | tail -"${1:-40}"; }
fail() { echo "FAILED: $*"; echo "-- the last console lines:"; console 40; exit 1; }

# Boot the disk until the guest reports and powers off; the report line.
boot() {
  rm -f "$W/console.log" "$W/marker.log"
  timeout "${BOOT_TIMEOUT:-600}" "$SLATE" vm --console-log "$W/console.log" --marker-log "$W/marker.log" \
    --workdir "$W" "$DISK" >"$W/vm.out" 2>&1 || true
  grep -a '^SLATE-E2E boot' "$W/marker.log" 2>/dev/null | tail -1 || true
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
compose() {
  local version=$1
  "$SLATE" compose --repo "$REPO" --lockfile "$W/v$version.lock" "$ROOT/tests/e2e/v$version.toml" >"$W/compose-v$version.out" 2>&1 \
    || { cat "$W/compose-v$version.out"; return 1; }
  tail -1 "$W/compose-v$version.out"
}

step "1: compose v1, install it, boot it"
v1=$(compose 1) || fail "compose v1"
"$SLATE" admin install --from "$REPO" --disk "$DISK" --force --os debian --workdir "$W" e2e/x86_64 \
  >"$W/install.out" 2>&1 || { cat "$W/install.out"; fail "install"; }
r=$(boot)
echo "   $r"
[[ -n $r ]] || fail "no report from the guest"
[[ $(field version "$r") == 1 ]] || fail "version: $r"
[[ $(field state "$r") == running ]] || fail "the system is not running: $r"
[[ $(field failed "$r") == none ]] || fail "failed units: $r"
[[ $(field usr "$r") == ro ]] || fail "/usr is not read-only: $r"
[[ $(field etc_fs "$r") == tmpfs ]] || fail "/etc is not a tmpfs: $r"
(( $(field etc_entries "$r") > 20 )) || fail "/etc was not rebuilt: $r"
entries=$(mdir -i "$DISK@@1M" -b ::/loader/entries)
grep -q '+' <<<"$entries" && fail "the boot was not blessed: $entries"
echo "   v1 ${v1:0:12}: running, /etc rebuilt, blessed ($entries)"
done_step
echo "end-to-end: all steps passed"
