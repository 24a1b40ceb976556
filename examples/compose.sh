#!/usr/bin/env bash
# Compose the example Debian image (examples/debian/image.toml), show it, and
# boot it on systemd-nspawn with an empty /etc and /var.
#   # bash examples/compose.sh             (as root; REPO=... CACHE=... to choose where)
#   # NO_BOOT=1 bash examples/compose.sh   compose only
# No account of the image has a password; in the container started at the end
# root is logged in on the console (a drop-in in the container's /run only).
set -euo pipefail
cd "$(dirname "$0")/.."
SLATE=${SLATE:-target/release/slate}
[[ -x $SLATE ]] || SLATE=target/debug/slate
[[ -x $SLATE ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "run as root (mmdebstrap --mode=root, nspawn)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "needs mmdebstrap: apt-get install mmdebstrap" >&2; exit 1; }
REPO=${REPO:-/var/tmp/slate-example-repo}
export SLATE_CACHE_DIR=${CACHE:-/var/cache/slate/compose}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
[[ -d $REPO ]] || "$SLATE" init --repo "$REPO" --mode bare
MANIFEST=examples/debian/image.toml
LOCK=${LOCK:-/var/tmp/slate-example.lock}

echo "== slate compose $MANIFEST (lockfile $LOCK)"
id=$("$SLATE" compose --repo "$REPO" --lockfile "$LOCK" "$MANIFEST")
echo "== the image: $id"
"$SLATE" show --repo "$REPO" "$id" | sed -n '1,12p'
echo "   ... ($("$SLATE" show --repo "$REPO" --json "$id" | grep -c '"architecture"') packages)"
echo "== its /etc is empty, its factory defaults are in /usr:"
"$SLATE" ls --repo "$REPO" "$id" /etc | wc -l | sed 's/^/   entries in \/etc: /'
"$SLATE" cat --repo "$REPO" "$id" /usr/lib/tmpfiles.d/slate-etc.conf | sed -n '1,6p'
echo "== the same lockfile again: the same commit (base from the tree cache)"
id2=$("$SLATE" compose --repo "$REPO" --lockfile "$LOCK" --locked "$MANIFEST")
[[ $id2 == "$id" ]] && echo "   same commit $id2" || { echo "   differs: $id2" >&2; exit 1; }
if [[ -n ${NO_BOOT:-} ]]; then exit 0; fi
command -v systemd-nspawn >/dev/null || { echo "to boot it: apt-get install systemd-container" >&2; exit 0; }
echo "== booting it with an empty /etc and /var: root logs in on the console (this container only);"
echo "   its network is its own (loopback only). Leave with poweroff, or Ctrl-] three times within a second."
exec "$SLATE" run --repo "$REPO" --boot --volatile=yes "$id"
