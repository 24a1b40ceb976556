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
#   2. compose v2, publish it signed and serve it from the host; in the guest
#      `slate admin deploy REMOTE:REF` pulls it over HTTP and deploys it; on the
#      next boot v2 runs, its ConditionNeedsUpdate=/var unit ran once, what v1
#      wrote to /var is there, the machine id is v1's.
# The steps that follow (a bad update the boot loader rolls back, a factory
# reset of /var, a rollback) are still to be written.
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
# The image's sources, with the key the guest trusts (made once per folder).
SRC=$W/src
rm -rf "$SRC"; cp -r "$ROOT/tests/e2e" "$SRC"
[[ -f $W/key.pem ]] || "$SLATE" keygen "$W/key.pem" >/dev/null
cp "$W/key.pem.pub" "$SRC/files/key.pub"
# What the guest is asked to do after its report (a file the host serves).
mkdir -p "$W/www"; echo report > "$W/www/action"
python3 -m http.server 8098 --bind 127.0.0.1 --directory "$W/www" >/dev/null 2>&1 &
WWW=$!
SERVE=
trap 'kill $WWW ${SERVE:-} 2>/dev/null || true' EXIT

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
  # (the serial line ends its lines with \r\n)
  tr -d '\r' <"$W/marker.log" 2>/dev/null | grep -a '^SLATE-E2E boot' | tail -1 || true
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
compose() {
  local version=$1
  "$SLATE" compose --repo "$REPO" --lockfile "$W/v$version.lock" "$SRC/v$version.toml" \
    >"$W/compose-v$version.out" 2>"$W/compose-v$version.err" || { cat "$W/compose-v$version.err"; return 1; }
  cat "$W/compose-v$version.out"
}

step "1: compose v1, install it, boot it"
v1=$(compose 1) || fail "compose v1"
"$SLATE" admin install --from "$REPO" --disk "$DISK" --force --os debian --workdir "$W" "$v1" \
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
mid1=$(field machine_id "$r")
[[ $(field needs_update_runs "$r") == 1 ]] || fail "ConditionNeedsUpdate=/var on v1's first boot: $r"
done_step

step "2: compose v2, publish it, the guest upgrades over HTTP, boot v2"
v2=$(compose 2) || fail "compose v2"
"$SLATE" sign --repo "$REPO" --key "$W/key.pem" "$v2" >/dev/null
"$SLATE" summary --repo "$REPO" --update --sign "$W/key.pem" >/dev/null
"$SLATE" serve --bind 127.0.0.1:8099 "$REPO" >"$W/serve.log" 2>&1 &
SERVE=$!
echo upgrade > "$W/www/action"
r=$(boot)
up=$(tr -d '\r' <"$W/marker.log" | grep -a '^SLATE-E2E upgrade' | tail -1 || true)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the upgrade in the guest: $up"
echo report > "$W/www/action"
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 2 ]] || fail "v2 does not run: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "v2's boot: $r"
[[ $(field var_kept "$r") == v1 ]] || fail "/var of v1 is gone: $r"
[[ $(field machine_id "$r") == "$mid1" ]] || fail "the machine id changed: $r"
[[ $(field needs_update_runs "$r") == 2 ]] || fail "ConditionNeedsUpdate=/var did not run once: $r"
echo "   v2 ${v2:0:12}: running, /var kept, machine id kept, ConditionNeedsUpdate ran once"
done_step
echo "end-to-end: all steps passed"
