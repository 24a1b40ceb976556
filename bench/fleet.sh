#!/usr/bin/env bash
# The fleet server under simulated agents on loopback, on SQLite and on
# PostgreSQL: MACHINES machines enrolled, then reporting as fast as the
# server takes them for SECS seconds from THREADS threads (each report a
# signed request, checked, stored with its nonce in one transaction):
# reports per second, p50/p99 latency. Then the page: an operator signs in
# and the first and last pages of the machines (100 a page) are timed.
# Targets: >= 1,000 reports/s with p99 < 100 ms on either database; a page
# of a 10,000-machine fleet in < 1 s.
#
# Needs: a release build (cargo build --release -p slate), curl, and for
# PostgreSQL Debian's postgresql (/usr/lib/postgresql/*/bin; run as the
# postgres user when this runs as root). Both databases commit without
# waiting for the disk on each transaction (SQLite WAL with
# synchronous=NORMAL, the server's setting; PostgreSQL
# synchronous_commit=off): a crash of the process loses nothing committed,
# a power loss may lose the last transactions, never half of one.
set -euo pipefail
cd "$(dirname "$0")/.."
SLATE=${SLATE:-$PWD/target/release/slate}
MACHINES=${MACHINES:-10000}
SECS=${SECS:-20}
THREADS=${THREADS:-32}
[[ -x $SLATE ]] || { echo "no $SLATE: cargo build --release -p slate" >&2; exit 1; }
work=$(mktemp -d)
chmod 755 "$work"   # PostgreSQL, run as its user, makes its cluster below
server=
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
as_pg() { if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null || true
  [[ -d $work/pg ]] && as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
echo "bench-password-of-some-length" > "$work/password"

run() {  # NAME DB
  local name=$1 db=$2 port
  "$SLATE" fleet group add --db "$db" bench --ref origin:os/main --token-file "$work/token" 2>/dev/null
  "$SLATE" fleet operator add --db "$db" bench --password-file "$work/password" 2>/dev/null
  port=$(free_port)
  "$SLATE" fleet serve --db "$db" --bind "127.0.0.1:$port" --insecure-http --threads "$THREADS" 2>"$work/$name.log" &
  server=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
  "$SLATE" fleet bench-agents --server "http://127.0.0.1:$port" --group bench \
    --token-file "$work/token" --machines "$MACHINES" --threads "$THREADS" --seconds "$SECS" > "$work/$name.json"
  curl -s -o /dev/null -c "$work/cookies" --data "name=bench&password=$(cat "$work/password")" \
    "http://127.0.0.1:$port/login"
  local last=$(( (MACHINES + 99) / 100 - 1 ))
  local first_t last_t
  first_t=$(curl -sf -o "$work/page" -b "$work/cookies" -w '%{time_total}' "http://127.0.0.1:$port/?page=0")
  grep -q "$MACHINES machines; page 1 of" "$work/page" || { echo "the page did not list the machines" >&2; exit 1; }
  last_t=$(curl -sf -o /dev/null -b "$work/cookies" -w '%{time_total}' "http://127.0.0.1:$port/?page=$last")
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  python3 - "$work/$name.json" "$name" "$first_t" "$last_t" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<10} {r['machines']} machines enrolled in {r['enroll_seconds']:.1f} s; "
      f"{r['reports']} reports in {r['seconds']:.1f} s = {r['reports_per_second']:.0f}/s, "
      f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
      f"{r['failures']} failed; page 1 {float(sys.argv[3])*1000:.0f} ms, last page {float(sys.argv[4])*1000:.0f} ms")
PY
}

run sqlite "$work/fleet.db"
if [[ -n $pgbin ]]; then
  mkdir -p "$work/pg"
  [[ $(id -u) == 0 ]] && chown postgres: "$work/pg"
  pgport=$(free_port)
  as_pg "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
  as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=100" start >/dev/null
  run postgresql "postgres://postgres@127.0.0.1:$pgport/postgres"
else
  echo "SKIPPED: postgresql: no /usr/lib/postgresql/*/bin"
fi
