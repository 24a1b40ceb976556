#!/usr/bin/env bash
# Slate's end-to-end test: a machine's life in a real virtual machine (QEMU,
# OVMF, systemd-boot, a dracut initrd, systemd), checked over serial markers.
# Opt-in: it takes minutes and needs root, mmdebstrap and a Debian mirror,
# QEMU (SLATE_QEMU, qemu-system-x86_64 on the PATH, or get-qemu.sh), ovmf,
# systemd-boot-efi, fdisk, dosfstools, mtools:
#
#   cargo build --release &&
#     cargo build --release --no-default-features --target-dir target/initrd &&
#     tests/e2e/run.sh
#
# Each step prints its time; a failed step prints the last console lines.
#   1. compose v1 (stateless /etc, persistent /var), install it on a disk, boot:
#      multi-user.target reached, no failed unit, /usr read-only, /etc a tmpfs
#      built from the factory defaults, the boot blessed by systemd-boot.
#   2. compose v2, publish it signed and serve it from the host; in the guest
#      (v1 pinned first, the factory version kept as a fallback) `slate admin
#      upgrade --check` sees version 2, and the update timer's service (run
#      at once) stages it from the remote the image names, over HTTP; a file
#      is written after the stage; v1 stays the default until the shutdown,
#      which finalizes v2 (its boot entry written then); on the next boot v2
#      runs with that file, its ConditionNeedsUpdate=/var unit ran once, what
#      v1 wrote to /var is there, the machine id is v1's.
#   3. compose and publish a broken v3 (a unit boot-complete.target requires
#      fails); in the guest `slate admin upgrade --tries 2`; v3 boots twice,
#      never blessed, then systemd-boot starts v2 by itself; in v2 `slate
#      admin status` shows v3 bad, v2 the default.
#   4. `slate admin factory-reset --var`; on the next boot /var is fresh
#      (nothing written before, ConditionNeedsUpdate=/var ran again), the
#      settings kept (the machine id, /etc rebuilt from the image).
#   5. `slate admin rollback`; on the next boot v1 runs, blessed, the default;
#      its fleet agent enrolls with the host's fleet server and reports v1.
#   6. the fleet: v4 published, a rollout to it started on the host's fleet
#      server; the guest's agent stages it, the shutdown finalizes it, v4
#      boots, and its report makes the server show it booted and blessed.
#   7. the disk is replaced: a fresh disk with v1 for the same machine (the
#      same SMBIOS UUID), its replacement approved in advance on the host
#      (`slate fleet replace OLD --by UUID`); at its first boot the agent
#      enrolls with that hardware id and restores the SSH host keys the
#      server kept before ssh.service starts (the fingerprint is the first
#      disk's, the keygen unit found them there); the rollout stages v4,
#      the shutdown finalizes it, v4 boots blessed with the same host key.
#   8. a verified /usr that breaks: v5 upgraded to in the guest (tries 1);
#      with the machine off, one byte of a file a health check reads is
#      flipped in v5's image on the disk; v5's boot reads EIO, is not
#      blessed, and systemd-boot goes back to v4 by itself.
# v2 and v5 are verity images (`usr = "verity"`), v3 and v4 plain: step 2's boot reports
# /usr as EROFS on dm-verity; before step 4's boot one byte of a file of
# v2's image on the disk is flipped: reading it fails with EIO there, and
# the guest's `slate admin verify` names the file. v1 stays plain (the
# rollback to it in step 5 boots a plain /usr).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
W=${E2E_DIR:-/var/tmp/slate-e2e}
skip() { echo "SKIPPED: $*"; exit 0; }
[[ $(id -u) == 0 ]] || skip "the end-to-end test needs root"
for t in mmdebstrap sfdisk mkfs.vfat mcopy mkfs.ext4 debugfs partx losetup; do
  command -v "$t" >/dev/null || skip "$t is not installed"
done
[[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ]] || skip "ovmf is not installed"
[[ -f /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] || skip "systemd-boot-efi is not installed"
SLATE=$(realpath "${SLATE:-target/release/slate}")
[[ -x $SLATE ]] || skip "build first: cargo build --release"
# The initrd's Slate: the build without network code.
SLATE_INITRD=$(realpath "${SLATE_INITRD:-target/initrd/release/slate}")
[[ -x $SLATE_INITRD ]] ||
  skip "build the initrd's first: cargo build --release --no-default-features --target-dir target/initrd"
export SLATE_INITRD_BIN=$SLATE_INITRD
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
# The files step 4 and step 8 damage in a verity image: lines that occur
# nowhere else, so that their bytes are found in the image.
printf 'SLATE-E2E-PROBE-%05d\n' $(seq 1 800) > "$SRC/files/probe"
printf 'SLATE-E2E-NEEDED-%05d\n' $(seq 1 800) > "$SRC/files/needed"
# What the guest is asked to do after its report (a file the host serves).
mkdir -p "$W/www"
ask() { echo "$1" > "$W/www/action"; }
ask report
# (served by Slate too: any folder of files will do)
"$SLATE" serve --any-folder --bind 127.0.0.1:8098 "$W/www" >"$W/www.log" 2>&1 &
WWW=$!
SERVE=
# The fleet server (plain HTTP on the host's loopback, which the guest
# reaches as 10.0.2.2) and the group the guest enrolls into.
FLEET_DB=$W/fleet.db
rm -f "$FLEET_DB" "$FLEET_DB"-* "$W/state.key" "$W/www/state-token"
# The machine's SMBIOS UUID, the same on every boot and every disk.
E2E_UUID=5a7e0000-e2e0-4000-8000-000000000001
head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$W/www/fleet-token"
"$SLATE" fleet group add --db "$FLEET_DB" e2e --ref e2e:e2e/x86_64 --token-file "$W/www/fleet-token" \
  >"$W/fleet-group.log" 2>&1 || { cat "$W/fleet-group.log"; exit 1; }
"$SLATE" fleet serve --db "$FLEET_DB" --bind 127.0.0.1:8097 --insecure-http --state-key "$W/state.key" \
  >"$W/fleet.log" 2>&1 &
FLEET=$!
trap 'kill $WWW $FLEET ${SERVE:-} 2>/dev/null || true' EXIT

t0=0
step() { t0=$(date +%s); echo "== step $1"; }
done_step() { echo "   ok in $(( $(date +%s) - t0 )) s"; }
console() { tr -d '\000' < "$W/console.log" | sed 's/\x1b\[[0-9;]*[a-zA-Z]//g' | grep -av '^\s*$' | tail -"${1:-40}"; }
fail() {
  echo "FAILED: $*"
  echo "-- the last console lines (every boot's: $W/boot-N.console.log):"
  console 40
  exit 1
}

# Boot the disk until the guest reports and powers off; the report line.
# Each boot's console and markers are kept (boot-N.console.log); a boot
# whose systemd found an ordering cycle fails (it drops units at random).
boots=0
boot() {
  rm -f "$W/console.log" "$W/marker.log"
  timeout "${BOOT_TIMEOUT:-600}" "$SLATE" vm --console-log "$W/console.log" --marker-log "$W/marker.log" \
    --uuid "$E2E_UUID" --workdir "$W" "$DISK" >"$W/vm.out" 2>&1 || true
  boots=$((boots + 1))
  cp "$W/console.log" "$W/boot-$boots.console.log" 2>/dev/null || true
  cp "$W/marker.log" "$W/boot-$boots.marker.log" 2>/dev/null || true
  if grep -aq "Ordering cycle" "$W/console.log" 2>/dev/null; then
    echo "SLATE-E2E ordering-cycle"
    return
  fi
  # (the serial line ends its lines with \r\n)
  tr -d '\r' <"$W/marker.log" 2>/dev/null | grep -a '^SLATE-E2E boot' | tail -1 || true
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
# Compose version N of the image (v3 with broken.toml's inputs); its commit.
compose() {
  local n=$1
  echo "$n" > "$SRC/files/version"
  sed "s/^version = \"1\"/version = \"$n\"/" "$SRC/image.toml" > "$SRC/v$n.toml"
  [[ $n != 3 ]] || cat "$SRC/broken.toml" >> "$SRC/v$n.toml"
  # v2 and later are dated now (a verity /usr's time is the commit's,
  # newer than v1's deployment: ConditionNeedsUpdate runs); v2 and v5
  # get a verity /usr, v3 and v4 stay plain (each verity deploy and boot
  # costs minutes under software emulation; the upgrades between them
  # go from verity to plain and back).
  local epoch=$SOURCE_DATE_EPOCH
  if (( n >= 2 )); then
    epoch=$(date +%s)
  fi
  if (( n == 2 || n == 5 )); then
    sed -i 's/^var = "persistent"$/&\nusr = "verity"/' "$SRC/v$n.toml"
  fi
  SOURCE_DATE_EPOCH=$epoch "$SLATE" compose --repo "$REPO" --lockfile "$W/v$n.lock" "$SRC/v$n.toml" \
    >"$W/compose-v$n.out" 2>"$W/compose-v$n.err" || { cat "$W/compose-v$n.err"; return 1; }
  cat "$W/compose-v$n.out"
}
publish() {
  { "$SLATE" sign --repo "$REPO" --key "$W/key.pem" "$1" &&
    "$SLATE" summary --repo "$REPO" --update --sign "$W/key.pem"; } >"$W/publish.log" 2>&1 ||
    { cat "$W/publish.log"; return 1; }
}
# The line the guest wrote after running the host's action.
action_result() { tr -d '\r' <"$W/marker.log" | grep -a '^SLATE-E2E action=' | tail -1 || true; }
# A field of the one machine the fleet server knows (its status as JSON).
fleet_field() {
  "$SLATE" fleet status --db "$FLEET_DB" --json | tr -d ' \n' |
    grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4
}
# A field of one machine (its id) as the fleet server knows it.
machine_field() {
  "$SLATE" fleet status --db "$FLEET_DB" --json "$1" | tr -d ' \n' |
    grep -o "\"$2\":\"[^\"]*\"" | head -1 | cut -d'"' -f4
}
# The ESP's entry file of a commit (its short id is in the name).
entry_of() { mdir -i "$DISK@@1M" -b ::/loader/entries | sed 's|.*/||' | grep -a "${1:0:12}" || true; }
# Flip one byte of a deployment's verity image on the disk (the machine
# off): the first occurrence of MARKER in the image of COMMIT's deployment,
# found through the image's blocks on the root file system (debugfs).
flip_in_image() {
  local commit=$1 marker=$2 start sectors loop id img bs off pblk at byte
  read -r start sectors < <(partx -g -o START,SECTORS -n 2 "$DISK")
  loop=$(losetup --find --show --read-only -o $((start * 512)) --sizelimit $((sectors * 512)) "$DISK")
  id=$(debugfs -R "ls -p /slate/deploy/debian" "$loop" 2>/dev/null | cut -d/ -f6 |
    grep -x "${commit:0:12}\.[0-9]*" | head -1) || true
  img=/slate/deploy/debian/$id/.usr.verity
  bs=$(debugfs -R stats "$loop" 2>/dev/null | sed -n 's/^Block size: *//p') || true
  off=$( { debugfs -R "cat $img" "$loop" 2>/dev/null | grep -obUaF "$marker" || true; } |
    head -1 | cut -d: -f1) || true
  pblk=
  [[ -z $off || -z $bs ]] || pblk=$(debugfs -R "bmap $img $((off / bs))" "$loop" 2>/dev/null) || true
  losetup -d "$loop"
  [[ -n $id && -n $off && $pblk =~ ^[0-9]+$ && $pblk != 0 ]] || { echo "no $marker in $img"; return 1; }
  at=$((start * 512 + pblk * bs + off % bs))
  byte=$(dd if="$DISK" bs=1 skip="$at" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
  # shellcheck disable=SC2059
  printf "$(printf '\\%03o' $((byte ^ 32)))" | dd of="$DISK" bs=1 seek="$at" count=1 conv=notrunc 2>/dev/null
  echo "   byte $off of $img (block $((off / 4096)) of the image, byte $at of the disk) flipped"
}
# The guest's `slate admin verify` line.
verify_result() { tr -d '\r' <"$W/marker.log" | grep -a '^SLATE-E2E verify ' | tail -1 || true; }
# A deployment's word in the guest's status: good, pending, bad or absent.
status_of() { tr ',' '\n' <<<"$(field status "$2")" | grep "^${1:0:12}:" | cut -d: -f2 || true; }

step "1: compose v1, install it, boot it"
v1=$(compose 1) || fail "compose v1"
# (room for the verity images of v2 and later beside v1)
"$SLATE" admin install --from "$REPO" --disk "$DISK" --size 6G --force --os debian --workdir "$W" "$v1" \
  >"$W/install.out" 2>&1 || { cat "$W/install.out"; fail "install"; }
r=$(boot)
echo "   $r"
[[ -n $r ]] || fail "no report from the guest"
[[ $(field version "$r") == 1 ]] || fail "version: $r"
[[ $(field image_version "$r") == 1 ]] || fail "os-release's IMAGE_VERSION: $r"
[[ $(field origin "$r") == e2e:e2e/x86_64 ]] || fail "the installed deployment does not follow the image's remote: $r"
[[ $(field state "$r") == running ]] || fail "the system is not running: $r"
[[ $(field failed "$r") == none ]] || fail "failed units: $r"
[[ $(field usr "$r") == ro ]] || fail "/usr is not read-only: $r"
[[ $(field usr_fs "$r") != erofs && $(field usr_dm "$r") == none ]] || fail "v1's /usr is not plain: $r"
[[ $(field etc_fs "$r") == tmpfs ]] || fail "/etc is not a tmpfs: $r"
(( $(field etc_entries "$r") > 20 )) || fail "/etc was not rebuilt: $r"
entries=$(mdir -i "$DISK@@1M" -b ::/loader/entries)
grep -q '+' <<<"$entries" && fail "the boot was not blessed: $entries"
echo "   v1 ${v1:0:12}: running, /etc rebuilt, blessed ($entries)"
mid1=$(field machine_id "$r")
[[ $(field needs_update_runs "$r") == 1 ]] || fail "ConditionNeedsUpdate=/var on v1's first boot: $r"
[[ $(field initrd_net "$r") == false ]] || fail "the initrd's slate is not the one without network code: $r"
echo "   the initrd's slate has no network code (prepare-root's record)"
done_step

step "2: compose v2, publish it; the guest's update timer stages it, the shutdown finalizes it, boot v2"
v2=$(compose 2) || fail "compose v2"
publish "$v2" || fail "publish v2"
"$SLATE" serve --bind 127.0.0.1:8099 "$REPO" >"$W/serve.log" 2>&1 &
SERVE=$!
ask stage-timer
r=$(boot)
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the update timer's run in the guest: $up"
grep -q "version 2" <<<"$up" || fail "upgrade --check did not see version 2: $up"
[[ $(field staged "$up") == "${v2:0:12}" ]] || fail "the timer did not stage v2: $up"
[[ $(field status "$up") == "${v1:0:12}:good:booted"* ]] || fail "v1 is not the default until the shutdown: $up"
[[ -n $(entry_of "$v2") ]] || fail "the shutdown did not finalize v2: no boot entry"
echo "   staged by the timer, v1 the default until the shutdown; entry $(entry_of "$v2") written at the shutdown"
ask report
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 2 ]] || fail "v2 does not run: $r"
[[ $(field image_version "$r") == 2 ]] || fail "os-release's IMAGE_VERSION: $r"
[[ $(field after_stage "$r") == yes ]] || fail "what was written after the stage is lost: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "v2's boot: $r"
[[ $(field var_kept "$r") == v1 ]] || fail "/var of v1 is gone: $r"
[[ $(field machine_id "$r") == "$mid1" ]] || fail "the machine id changed: $r"
[[ $(field needs_update_runs "$r") == 2 ]] || fail "ConditionNeedsUpdate=/var did not run once: $r"
[[ $(status_of "$v1" "$r") == good ]] || fail "v1 is not kept (pinned) as a fallback: $r"
echo "   v2 ${v2:0:12}: running, the file written after the stage there, /var kept, machine id kept, ConditionNeedsUpdate ran once"
[[ $(field usr_fs "$r") == erofs && $(field usr_dm "$r") == verity ]] || fail "v2's /usr is not EROFS on dm-verity: $r"
[[ $(field usr_signed "$r") == yes ]] || fail "the initrd did not check v2's root hash against its signature: $r"
[[ $(field usr "$r") == ro && $(field probe "$r") == ok ]] || fail "v2's /usr: $r"
grep -q "root hash" "$W/compose-v2.err" || fail "compose of v2 made no verity root hash"
echo "   v2's /usr: erofs on dm-verity ($(grep -o 'root hash [0-9a-f]*' "$W/compose-v2.err"))"
done_step

step "3: a broken v3: never blessed, systemd-boot goes back to v2 by itself"
v3=$(compose 3) || fail "compose v3"
publish "$v3" || fail "publish v3"
ask upgrade
r=$(boot)
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the upgrade in the guest: $up"
ask report
for try in 1 2; do
  r=$(boot)
  echo "   $r"
  [[ $(field version "$r") == 3 ]] || fail "v3's try $try does not run v3: $r"
  grep -q slate-e2e-broken.service <<<"$(field failed "$r")" || fail "v3's health check did not fail: $r"
  [[ $(field bless "$r") != active ]] || fail "v3's boot was blessed: $r"
  e=$(entry_of "$v3")
  [[ $e == *"+$((2 - try))-$try.conf" ]] || fail "v3's entry after try $try: $e"
  echo "   try $try: not blessed, entry $e"
done
ask factory-reset-var
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 2 ]] || fail "systemd-boot did not go back to v2: $r"
[[ $(field state "$r") == running ]] || fail "v2's boot after v3: $r"
[[ $(status_of "$v3" "$r") == bad ]] || fail "status does not show v3 bad: $r"
[[ $(field status "$r") == "${v2:0:12}:good:booted,"* ]] || fail "v2 is not the booted default: $r"
echo "   v2 runs again; status: $(field status "$r")"
done_step

step "4: factory-reset --var: /var fresh, the settings kept; a flipped byte of v2's image read as EIO"
up=$(action_result)
echo "   $up (asked in step 3's last boot)"
[[ $(field rc "$up") == 0 ]] || fail "factory-reset in the guest: $up"
[[ $(field var_kept "$r") != none ]] || fail "nothing in /var to reset: $r"
flip_in_image "$v2" SLATE-E2E-PROBE-00400 || fail "flipping a byte of v2's image"
echo yes > "$W/www/verify"
ask rollback
r=$(boot)
rm -f "$W/www/verify"
echo "   $r"
vr=$(verify_result)
echo "   $vr"
[[ $(field probe "$r") == eio ]] || fail "reading the damaged file of v2's /usr did not fail with EIO: $r"
[[ $(field rc "$vr") == 1 && $vr == *"/usr/lib/slate-e2e/probe"* ]] || fail "slate admin verify did not name the damaged file: $vr"
echo "   the damaged file read as EIO; verify named it"
[[ $(field version "$r") == 2 && $(field state "$r") == running ]] || fail "v2 after the reset: $r"
[[ $(field var_kept "$r") == none ]] || fail "/var was not reset: $r"
[[ $(field needs_update_runs "$r") == 1 ]] || fail "ConditionNeedsUpdate=/var on a fresh /var: $r"
[[ $(field machine_id "$r") == "$mid1" ]] || fail "the machine id changed: $r"
(( $(field etc_entries "$r") > 20 )) || fail "/etc was not rebuilt: $r"
echo "   /var fresh, machine id kept, /etc rebuilt"
done_step

step "5: rollback to v1; its fleet agent enrolls and reports"
up=$(action_result)
echo "   $up (asked in step 4's boot)"
[[ $(field rc "$up") == 0 ]] || fail "rollback in the guest: $up"
ask fleet-agent
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 1 ]] || fail "v1 does not run: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "v1's boot: $r"
[[ $(field status "$r") == "${v1:0:12}:good:booted"* ]] || fail "v1 is not the booted default: $r"
[[ $(field machine_id "$r") == "$mid1" ]] || fail "the machine id changed: $r"
echo "   v1 runs, the default; status: $(field status "$r")"
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the fleet agent in the guest: $up"
[[ $(fleet_field booted_commit) == "$v1" ]] || fail "the fleet server does not show v1 booted: $(fleet_field booted_commit)"
echo "   the fleet server knows the machine: v1 booted, $(fleet_field health)"
done_step

step "6: the fleet rolls v4 out: the guest's agent stages it, v4 boots, the server shows it blessed"
v4=$(compose 4) || fail "compose v4"
publish "$v4" || fail "publish v4"
"$SLATE" fleet rollout start --db "$FLEET_DB" e2e "$v4" --waves 100 --max-failures 1 \
  >"$W/rollout.log" 2>&1 || { cat "$W/rollout.log"; fail "rollout start"; }
r=$(boot)
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 && $(field outcome "$up") == staged ]] || fail "the agent did not stage v4: $up"
[[ -n $(entry_of "$v4") ]] || fail "the shutdown did not finalize v4: no boot entry"
ask fleet-agent
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 4 ]] || fail "v4 does not run: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "v4's boot: $r"
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the fleet agent in v4: $up"
[[ $(fleet_field booted_commit) == "$v4" ]] || fail "the fleet server does not show v4 booted: $(fleet_field booted_commit)"
[[ $(fleet_field health) == blessed ]] || fail "the fleet server does not show v4 blessed: $(fleet_field health)"
echo "   the fleet server shows v4 ${v4:0:12} booted and blessed"
fp1=$(field ssh_fp "$r")
[[ -n $fp1 && $fp1 != none ]] || fail "no SSH host key on the first disk: $r"
# The hardware id the guest sees (QEMU's -uuid, as the firmware gives it).
hw=$(field hardware "$r")
[[ -n $hw && $hw != none ]] || fail "no hardware id in the guest: $r"
done_step

step "7: a new disk for the same machine, approved in advance: its SSH host keys back before sshd, v4 by the rollout"
old=$(fleet_field machine)
kept=$("$SLATE" fleet state list --db "$FLEET_DB" "$old" 2>&1)
grep -q /etc/ssh/ssh_host_ed25519_key <<<"$kept" || fail "the fleet server keeps no host key of $old: $kept"
echo "   approving the replacement of $old by hardware $hw (vm --uuid $E2E_UUID)"
"$SLATE" fleet replace --db "$FLEET_DB" "$old" --by "$hw" >"$W/replace.log" 2>&1 ||
  { cat "$W/replace.log"; fail "fleet replace"; }
# The new disk's agent enrolls at its first boot: the host serves the token.
cp "$W/www/fleet-token" "$W/www/state-token"
rm -f "$DISK"
"$SLATE" admin install --from "$REPO" --disk "$DISK" --size 6G --force --os debian --workdir "$W" "$v1" \
  >"$W/install-7.out" 2>&1 || { cat "$W/install-7.out"; fail "install on the new disk"; }
ask fleet-agent
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 1 ]] || fail "the new disk does not run v1: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "the new disk's boot: $r"
[[ $(field ssh_fp "$r") == "$fp1" ]] || fail "the SSH host key is not the first disk's ($fp1): $r"
(( $(field restored "$r") >= 2 )) || fail "the agent restored no host key at boot: $r"
[[ $(field keygen "$r") == no ]] || fail "host keys were made on the new disk: $r"
[[ $(field restore_before_ssh "$r") == yes ]] || fail "the keys came back after ssh.service started: $r"
echo "   the host key $fp1 is back before sshd ($(field restored "$r") files restored, no keygen)"
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 && $(field outcome "$up") == staged ]] || fail "the agent did not stage v4 on the new disk: $up"
rm -f "$W/www/state-token"
new=$("$SLATE" fleet state list --db "$FLEET_DB" --json "$old" | tr -d ' \n' |
  grep -o '"replaced_by":"[0-9a-f]*"' | cut -d'"' -f4)
[[ -n $new ]] || fail "the fleet server does not show $old replaced"
ask fleet-agent
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 4 ]] || fail "v4 does not run on the new disk: $r"
[[ $(field state "$r") == running && $(field failed "$r") == none ]] || fail "v4's boot on the new disk: $r"
[[ $(field ssh_fp "$r") == "$fp1" ]] || fail "the SSH host key changed in v4: $r"
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the fleet agent in v4 on the new disk: $up"
[[ $(machine_field "$new" booted_commit) == "$v4" ]] || fail "the fleet server does not show v4 booted on $new"
[[ $(machine_field "$new" health) == blessed ]] || fail "the fleet server does not show v4 blessed on $new"
echo "   machine $new replaces $old: v4 ${v4:0:12} booted and blessed, the same host key"
done_step
step "8: v5's verity /usr damaged in a file the boot needs: not blessed, back to v4 by itself"
v5=$(compose 5) || fail "compose v5"
publish "$v5" || fail "publish v5"
ask upgrade-once
r=$(boot)
up=$(action_result)
echo "   $up"
[[ $(field rc "$up") == 0 ]] || fail "the upgrade to v5 in the guest: $up"
[[ -n $(entry_of "$v5") ]] || fail "no boot entry for v5"
flip_in_image "$v5" SLATE-E2E-NEEDED-00400 || fail "flipping a byte of v5's image"
ask report
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 5 ]] || fail "v5's try does not run v5: $r"
grep -q slate-e2e-needed.service <<<"$(field failed "$r")" || fail "reading the damaged file did not fail v5's health check: $r"
[[ $(field bless "$r") != active ]] || fail "v5's boot was blessed: $r"
r=$(boot)
echo "   $r"
[[ $(field version "$r") == 4 && $(field state "$r") == running ]] || fail "systemd-boot did not go back to v4: $r"
[[ $(status_of "$v5" "$r") == bad ]] || fail "status does not show v5 bad: $r"
echo "   v5 failed its health check (EIO), v4 runs again; status: $(field status "$r")"
done_step
echo "end-to-end: all steps passed"
