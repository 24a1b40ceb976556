#!/usr/bin/env bash
# Slate's main job on a built-in example: build a small OS-like tree, commit
# it into a repository, show the log, change it, commit again, and check out
# both versions; publish it (an archive repository, signed, with a summary),
# serve it over HTTP and pull it into a second repository; then (as root: a
# sysroot's repository keeps real owners) deploy it from that server into a
# sysroot in a directory, publish version 2 with a delta, upgrade (pull,
# then deploy beside version 1), show the status, roll back, and show how
# the machine drifted from its image.
# Everything happens in a temporary directory (kept with KEEP=1).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q --manifest-path "$top/Cargo.toml"
slate() { "$top/target/release/slate" "$@"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/slate-demo.XXXXXX")
serve_pid=
cleanup() {
    [[ -z $serve_pid ]] || kill "$serve_pid" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT
export SLATE_REPO=$work/repo
tree=$work/rootfs

echo "== building an example tree in $tree"
mkdir -p "$tree"/{etc,usr/bin,usr/lib/os,usr/share/factory/etc,var/lib}
printf 'NAME="Slate Example"\nVERSION_ID=1\n' >"$tree/usr/lib/os-release"
ln -s ../usr/lib/os-release "$tree/etc/os-release"
printf '#!/bin/sh\necho hello from slate\n' >"$tree/usr/bin/hello"
chmod 0755 "$tree/usr/bin/hello"
ln "$tree/usr/bin/hello" "$tree/usr/bin/hi"
printf 'example\n' >"$tree/usr/share/factory/etc/hostname"
head -c 1000000 /dev/urandom >"$tree/usr/lib/os/blob.bin"
mkdir -p "$tree/usr/lib/sysusers.d"
printf 'g example-admins -\nu example-web - "Example web server" /var/lib/web\nm example-web example-admins\n' \
    >"$tree/usr/lib/sysusers.d/example.conf"
mkdir -p "$tree/usr/lib/tmpfiles.d" "$tree/usr/share/factory/etc"
printf 'Welcome to the Slate example OS\n' >"$tree/usr/share/factory/etc/motd"
printf 'd /var/lib/web 0750 example-web example-admins -\nf /var/lib/web/index.html 0640 example-web - - hello\\n\nC /etc/motd\nL /var/run - - - - ../run\nd /var/tmp 1777 root root 30d\n' \
    >"$tree/usr/lib/tmpfiles.d/example.conf"

echo "== slate init"
slate init --mode bare-user
echo "== slate commit (v1)"
v1=$(SOURCE_DATE_EPOCH=1700000000 slate commit -b example/main -s "Example OS 1" --add-metadata version=1 "$tree")
echo "== changing the tree and committing v2"
printf 'NAME="Slate Example"\nVERSION_ID=2\n' >"$tree/usr/lib/os-release"
v2=$(SOURCE_DATE_EPOCH=1700086400 slate commit -b example/main -s "Example OS 2" --add-metadata version=2 "$tree")
echo "== slate log example/main"
slate log example/main
echo "== slate ls -l example/main /usr/bin"
slate ls -l example/main /usr/bin
echo "== slate cat example/main^ /usr/lib/os-release"
slate cat example/main^ /usr/lib/os-release
echo "== slate checkout example/main $work/deploy-v2"
slate checkout example/main "$work/deploy-v2"
"$work/deploy-v2/usr/bin/hello"
echo "== the deployed /etc starts empty; slate sysusers creates its users from the image's rules"
slate sysusers --root="$work/deploy-v2" --dry-run --json
slate sysusers --root="$work/deploy-v2"
cat "$work/deploy-v2/etc/passwd" "$work/deploy-v2/etc/group"
echo "== slate tmpfiles builds /etc and /var from the image's tmpfiles.d rules"
slate tmpfiles --create --boot --root="$work/deploy-v2"
find "$work/deploy-v2/var" "$work/deploy-v2/etc/motd" -printf '%M %U:%G %p %l\n' | sed "s|$work/deploy-v2||"
echo "== rolling the branch back: slate reset example/main $v1"
slate reset example/main "$v1" >/dev/null
slate checkout example/main "$work/deploy-v1"
grep VERSION_ID "$work/deploy-v1/usr/lib/os-release"
[[ $(slate rev-parse example/main) == "$v1" ]] && echo "branch is back at v1 ($v1); v2 was $v2"

echo "== publishing: an archive repository, a signing key, a signed commit and summary"
pub=$work/pub
slate init --repo "$pub" --mode archive
slate keygen "$work/signing.pem"
slate pull-local --repo "$pub" "$SLATE_REPO" example/main >/dev/null
slate sign --repo "$pub" example/main --key "$work/signing.pem"
slate summary --repo "$pub" --update --sign "$work/signing.pem"
echo "== slate serve $pub (any static web server would do)"
# (the binary itself, not the shell function, so that $! is the server)
"$top/target/release/slate" serve --bind 127.0.0.1:0 "$pub" 2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 100); do grep -q 'http://' "$work/serve.log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.log")
echo "serving on $url"
echo "== pulling it into a second repository, signatures checked"
slate init --repo "$work/second" --mode bare-user
slate remote --repo "$work/second" add origin "$url" --sign-verify "$work/signing.pem.pub"
slate pull --repo "$work/second" origin example/main
slate log --repo "$work/second" remotes/origin/example/main

if [[ $(id -u) != 0 ]]; then
    echo "== skipping the deployments: a sysroot's repository is bare (real owners) and needs root"
    exit 0
fi
sysroot=$work/sysroot
echo "== slate admin init-fs $sysroot; os-init example"
slate admin init-fs "$sysroot"
export SLATE_SYSROOT=$sysroot
slate admin os-init example --etc persistent --var persistent
# A kernel for the boot entries (a stand-in: nothing boots here).
mkdir -p "$tree/usr/lib/modules/6.1.0-example"
printf 'kernel\n' >"$tree/usr/lib/modules/6.1.0-example/vmlinuz"
printf 'initrd\n' >"$tree/usr/lib/modules/6.1.0-example/initrd"
printf 'Welcome to the Slate example OS\n' >"$tree/etc/motd"
printf 'NAME="Slate Example"\nVERSION_ID=1\nPRETTY_NAME="Slate Example 1"\n' >"$tree/usr/lib/os-release"
SOURCE_DATE_EPOCH=1700172800 slate commit -b example/main -s "Example OS 1, bootable" "$tree" >/dev/null
# publish: the build repository's new commit, signed, into the served archive
publish() {
    slate pull-local --repo "$pub" "$SLATE_REPO" example/main >/dev/null
    slate sign --repo "$pub" example/main --key "$work/signing.pem" >/dev/null
    slate delta generate --repo "$pub" --ref example/main --previous 1 >/dev/null
    slate summary --repo "$pub" --update --sign "$work/signing.pem" >/dev/null
}
publish
echo "== the sysroot's repository gets the remote; slate admin deploy origin:example/main"
slate remote --repo "$sysroot/slate/repo" add origin "$url" --sign-verify "$work/signing.pem.pub"
slate admin deploy --karg root=/dev/vda2 origin:example/main
dep1=$(slate admin status | awk '$1 == "*" { print $3; exit }')
echo "== the machine changes its /etc: a local motd"
printf 'This machine is ours\n' >"$sysroot/slate/deploy/$dep1/etc/motd"
echo "== version 2 of the image, deployed beside version 1 (the local motd carried over)"
printf 'NAME="Slate Example"\nVERSION_ID=2\nPRETTY_NAME="Slate Example 2"\n' >"$tree/usr/lib/os-release"
SOURCE_DATE_EPOCH=1700259200 slate commit -b example/main -s "Example OS 2, bootable" "$tree" >/dev/null
publish
slate delta list --repo "$pub"
echo "== slate admin upgrade: pulls version 2 (its delta), then deploys it"
slate admin upgrade
echo "== slate admin status"
slate admin status
echo "== the boot entries (Boot Loader Specification, counted by systemd-boot)"
ls "$sysroot/boot/loader/entries"
echo "== slate admin rollback"
slate admin rollback
slate admin status | grep -E '^[* ] [0-9]'
echo "== slate admin config-diff: how the default deployment drifted from its image"
slate admin config-diff
