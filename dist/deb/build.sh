#!/usr/bin/env bash
# Build Slate's Debian package, slate_VERSION_ARCH.deb, with dpkg-deb:
#   the binary                  /usr/bin/slate
#   the man pages (docs/man)    /usr/share/man/man1/*.1.gz
#   the shell completions       bash, zsh and fish's vendor folders
#   the dracut module           /usr/lib/dracut/modules.d/50slate
#   the systemd units           /usr/lib/systemd/system (whatever dist/systemd/ holds)
#
#   dist/deb/build.sh [OUTDIR]        (default: target/deb)
#
# SLATE_BIN names the binary to package (default: target/release/slate,
# built with `cargo build --release --locked -p slate` when missing);
# SLATE_DEB_COMPRESSION dpkg-deb's compressor (default xz; the tests use
# none).
# Files get SOURCE_DATE_EPOCH's time (default: the last commit's), so the
# same binary and tree give the same package.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/deb}
bin=${SLATE_BIN:-target/release/slate}
if [[ ! -x $bin ]]; then
  cargo build --release --locked -p slate
fi
version=$("$bin" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH=$epoch

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN"

install -D -m 0755 "$bin" "$root/usr/bin/slate"
strip --strip-debug "$root/usr/bin/slate" 2>/dev/null || true

for page in docs/man/*.1; do
  install -D -m 0644 "$page" "$root/usr/share/man/man1/$(basename "$page")"
  gzip -9 -n "$root/usr/share/man/man1/$(basename "$page")"
done

mkdir -p "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$bin" completions bash >"$root/usr/share/bash-completion/completions/slate"
"$bin" completions zsh >"$root/usr/share/zsh/vendor-completions/_slate"
"$bin" completions fish >"$root/usr/share/fish/vendor_completions.d/slate.fish"

mod=$root/usr/lib/dracut/modules.d/50slate
mkdir -p "$mod"
for f in dist/dracut/50slate/*; do
  case $f in
    *.sh) install -m 0755 "$f" "$mod/" ;;
    *) install -m 0644 "$f" "$mod/" ;;
  esac
done

units=(dist/systemd/*)
if [[ -e ${units[0]} ]]; then
  mkdir -p "$root/usr/lib/systemd/system"
  for u in "${units[@]}"; do
    [[ -f $u ]] && install -m 0644 "$u" "$root/usr/lib/systemd/system/"
  done
fi

doc=$root/usr/share/doc/slate
mkdir -p "$doc"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: slate
Files: *
License: MIT or Apache-2.0
COPYRIGHT

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: slate
Version: $version
Architecture: $arch
Maintainer: Slate developers <slate@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1
Recommends: systemd
Suggests: dracut, podman, mmdebstrap, systemd-container
Section: admin
Priority: optional
Description: stateless Linux machines from one versioned, read-only OS image
 Slate stores operating-system trees in a content-addressed repository,
 pulls them over HTTP with signed summaries and deltas, and deploys them
 side by side with boot entries; /etc and /var are rebuilt from the
 image's factory defaults. It commits container images (podman save) and
 exports them.
CONTROL

find "$root" -exec touch -h -d "@$epoch" {} +
mkdir -p "$out"
deb="$out/slate_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${SLATE_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
