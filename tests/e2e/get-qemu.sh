#!/usr/bin/env bash
# QEMU for the end-to-end test on a Debian 12 machine whose qemu-utils
# (from backports) keeps qemu-system-x86 from installing: the shared
# libraries it links against are installed, its packages downloaded and
# unpacked into DIR (default /var/tmp/slate-e2e/qemu). Prints the binary.
set -euo pipefail
DIR=${1:-/var/tmp/slate-e2e/qemu}
BIN=$DIR/usr/bin/qemu-system-x86_64
if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
libs=$(apt-cache depends qemu-system-x86 | awk '/Depends: lib/ {print $2}' | sort -u)
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $libs >/dev/null
mkdir -p "$DIR/debs"
(cd "$DIR/debs" && apt-get download qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu >/dev/null)
for f in "$DIR"/debs/*.deb; do dpkg -x "$f" "$DIR"; done
"$BIN" --version >/dev/null
echo "$BIN"
