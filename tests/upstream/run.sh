#!/usr/bin/env bash
# Run systemd's own test suites for tmpfiles and sysusers, as Debian ships
# them in the systemd-tests package, against `slate tmpfiles` and
# `slate sysusers` (or, with --control, against systemd's own binaries).
#
#   tests/upstream/run.sh [--slate BIN | --control] [--compare] [--work DIR]
#                         [--data DIR] [--only REGEX] [--list]
#
# Every case runs in isolation: a private mount namespace with fresh tmpfs
# on /tmp, /var/tmp and /run, a throw-away copy of /etc, the host's
# tmpfiles.d hidden, and `systemd-tmpfiles` and `systemd-sysusers` in PATH
# resolving to the tools under test. Nothing of systemd's test files is part
# of Slate: they are read from the package at run time.
#
# The cases:
#   sysusers  every test-N.input in each mode of test-sysusers.sh (from a
#             file, on stdin, on stdin with --replace, with a login.defs,
#             with a login.defs reached through a symlink), the two --inline
#             cases, and every unhappy-N.input (the last line of the error
#             output compared);
#   tmpfiles  every testsuite-22.NN.sh script (TEST-22-TMPFILES), unchanged.
#
# One line per case, then "N passed, N failed". --compare runs the suites
# twice, with systemd's binaries and with Slate's, and fails when a case
# that passes with systemd fails with Slate (a broken harness shows as
# systemd failures). Needs root (mount namespaces); skips, saying why,
# when it cannot run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
data=/usr/lib/systemd/tests/testdata
slate=""
control=0
compare=0
only=""
list=0
work=""

die() { echo "run.sh: $*" >&2; exit 2; }
skip() { echo "SKIP systemd's test suites: $*"; exit 0; }

# ---------------------------------------------------------------------------
# Inside the namespace: set up the throw-away system, run one case.

# The namespace's own state lives on its fresh /run: the host's /tmp and
# /var/tmp stay reachable below it (the tools under test may live there),
# the copy of /etc, the PATH wrappers.
stage=/run/.upstream

isolate() {
  mount -t tmpfs -o mode=755 tmpfs /run || return 1
  mkdir -p "$stage"/{host-tmp,host-var-tmp,etc,bin} || return 1
  mount --rbind /tmp "$stage/host-tmp" || return 1
  mount --rbind /var/tmp "$stage/host-var-tmp" || return 1
  mount -t tmpfs -o mode=1777 tmpfs /tmp || return 1
  mount -t tmpfs -o mode=1777 tmpfs /var/tmp || return 1
  # /etc: a copy on the fresh /run, bound over the real one.
  cp -a /etc/. "$stage/etc/" || return 1
  mount --bind "$stage/etc" /etc || return 1
  rm -rf /etc/tmpfiles.d && mkdir /etc/tmpfiles.d
  # The host's tmpfiles.d hidden (TEST-22.13 writes to /usr/lib/tmpfiles.d).
  local d
  for d in /usr/lib/tmpfiles.d /usr/local/lib/tmpfiles.d /lib/tmpfiles.d; do
    [[ -d $d && ! -L $d ]] || continue
    mountpoint -q "$d" || mount -t tmpfs -o mode=755 tmpfs "$d" || return 1
  done
  return 0
}

preprocess() {
  sed -e "s/SYSTEM_UGID_MAX/${2:-999}/g; s#NOLOGIN#/usr/sbin/nologin#g" "$1"
}

compare_db() {
  local t=$1 base=$2
  diff -u "$t/etc/passwd" <(preprocess "$base.expected-passwd") &&
    diff -u "$t/etc/group" <(preprocess "$base.expected-group")
}

prepare_testdir() {
  local t=$1 base=$2 i
  mkdir -p "$t/etc/sysusers.d" "$t/usr/lib/sysusers.d"
  rm -f "$t"/etc/*{passwd,group,shadow}
  for i in "$base".initial-{passwd,group,shadow}; do
    [[ -f $i ]] && cp "$i" "$t/etc/${i#*.initial-}"
  done
  return 0
}

login_defs() {
  cat >"$1/etc/login.defs" <<'EOF'
SYS_UID_MIN abcd
SYS_UID_MAX abcd
SYS_GID_MIN abcd
SYS_GID_MAX abcd
SYS_UID_MIN 401
SYS_UID_MAX 555
SYS_GID_MIN 405
SYS_GID_MAX 666
SYS_UID_MIN abcd
SYS_UID_MAX abcd
SYS_GID_MIN abcd
SYS_GID_MAX abcd
SYS_UID_MIN999
SYS_UID_MAX999
SYS_GID_MIN999
SYS_GID_MAX999
EOF
}

# One sysusers case, in the state test-sysusers.sh leaves before it: the
# previous loops leave the last input in usr/lib/sysusers.d/test.conf.
sysusers_case() {
  local mode=$1 input=${2:-}
  local src="$data/test-sysusers" t=/tmp/test-sysusers
  local last
  last=$(ls -1 "$src"/test-*.input | sort -V | tail -n1)
  local base=${input%.input}
  mkdir -p "$t/etc/sysusers.d" "$t/usr/lib/sysusers.d"
  case $mode in
    file)
      prepare_testdir "$t" "$base"
      cp "$input" "$t/usr/lib/sysusers.d/test.conf"
      systemd-sysusers --root="$t" && compare_db "$t" "$base" ;;
    stdin)
      cp "$last" "$t/usr/lib/sysusers.d/test.conf"
      prepare_testdir "$t" "$base"
      touch "$t/etc/sysusers.d/test.conf"
      systemd-sysusers --root="$t" - <"$input" && compare_db "$t" "$base" ;;
    stdin-replace)
      cp "$last" "$t/usr/lib/sysusers.d/test.conf"
      prepare_testdir "$t" "$base"
      touch "$t/etc/sysusers.d/test.conf"
      systemd-sysusers --root="$t" --replace=/etc/sysusers.d/test.conf - <"$input" &&
        systemd-sysusers --root="$t" --replace=/usr/lib/sysusers.d/test.conf - <"$src/test-1.input" &&
        compare_db "$t" "$base" ;;
    inline | inline-replace)
      cp "$last" "$t/usr/lib/sysusers.d/test.conf"
      touch "$t/etc/sysusers.d/test.conf"
      prepare_testdir "$t" "$src/inline"
      cp "$last" "$t/etc/sysusers.d/confuse.conf"
      local replace=()
      [[ $mode == inline-replace ]] && replace=(--replace=/etc/sysusers.d/confuse.conf)
      systemd-sysusers --root="$t" --inline "${replace[@]}" \
        "u     u1   222 -     - /bin/zsh" "g     g1   111" &&
        compare_db "$t" "$src/inline" ;;
    login-defs | login-defs-symlinked)
      login_defs "$t"
      if [[ $mode == login-defs-symlinked ]]; then
        mv "$t/etc/login.defs" "$t/etc/login.defs.moved"
        ln -s ../../../../../etc/login.defs.moved "$t/etc/login.defs"
      fi
      prepare_testdir "$t" "$base"
      cp "$input" "$t/usr/lib/sysusers.d/test.conf"
      systemd-sysusers --root="$t" && compare_db "$t" "$base" ;;
    unhappy)
      login_defs "$t"
      mv "$t/etc/login.defs" "$t/etc/login.defs.moved"
      ln -s ../../../../../etc/login.defs.moved "$t/etc/login.defs"
      prepare_testdir "$t" "$base"
      cp "$input" "$t/usr/lib/sysusers.d/test.conf"
      SYSTEMD_LOG_LEVEL=info systemd-sysusers --root="$t" 2>&1 | tail -n1 |
        sed -r 's/^[^:]+:[^:]+://' >"$t/err"
      diff -u "$t/err" "$base.expected-err" ;;
    *) echo "unknown sysusers mode $mode" >&2; return 2 ;;
  esac
}

# Where a host path is inside the namespace.
moved() {
  case $1 in
    /tmp/*) echo "$stage/host-tmp/${1#/tmp/}" ;;
    /var/tmp/*) echo "$stage/host-var-tmp/${1#/var/tmp/}" ;;
    *) echo "$1" ;;
  esac
}

# inside TOOL KIND ARGS…: TOOL is `systemd` or the path of Slate's binary.
inside() {
  local tool=$1 kind=$2
  shift 2
  isolate || { echo "could not set up the namespace" >&2; return 2; }
  data=$(moved "$data")
  local t s
  if [[ $tool == systemd ]]; then
    t=$(command -v systemd-tmpfiles) s=$(command -v systemd-sysusers)
  else
    tool=$(moved "$tool")
    t="$tool tmpfiles" s="$tool sysusers"
  fi
  printf '#!/bin/sh\nexec %s "$@"\n' "$t" >"$stage/bin/systemd-tmpfiles"
  printf '#!/bin/sh\nexec %s "$@"\n' "$s" >"$stage/bin/systemd-sysusers"
  chmod 755 "$stage"/bin/*
  export PATH="$stage/bin:$PATH"
  local args=() a
  for a in "$@"; do args+=("$(moved "$a")"); done
  set -- "${args[@]}"
  cd /tmp || return 2
  case $kind in
    sysusers) sysusers_case "$@" ;;
    tmpfiles) bash "$1" ;;
  esac
}

if [[ ${1:-} == --inside ]]; then
  shift
  data=$1
  shift
  inside "$@"
  exit
fi

# ---------------------------------------------------------------------------
# Outside: the list of cases, one namespace each.

while (($#)); do
  case $1 in
    --slate) slate=$2; shift ;;
    --control) control=1 ;;
    --compare) compare=1 ;;
    --work) work=$2; shift ;;
    --data) data=$2; shift ;;
    --only) only=$2; shift ;;
    --list) list=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ -d $data/test-sysusers && -d $data/units ]] ||
  skip "$data has no test-sysusers/ and units/ (install the systemd-tests package)"

# name<TAB>kind<TAB>arguments…
cases() {
  local f m
  for m in file stdin stdin-replace login-defs login-defs-symlinked; do
    for f in $(ls -1 "$data"/test-sysusers/test-*.input | sort -V); do
      printf 'sysusers %s (%s)\tsysusers\t%s\t%s\n' "$(basename "${f%.input}")" "$m" "$m" "$f"
    done
  done
  printf 'sysusers --inline\tsysusers\tinline\n'
  printf 'sysusers --inline --replace\tsysusers\tinline-replace\n'
  for f in $(ls -1 "$data"/test-sysusers/unhappy-*.input | sort -V); do
    printf 'sysusers %s\tsysusers\tunhappy\t%s\n' "$(basename "${f%.input}")" "$f"
  done
  for f in $(ls -1 "$data"/units/testsuite-22.*.sh | sort -V); do
    printf 'tmpfiles %s\ttmpfiles\t%s\n' "$(basename "${f%.sh}" | sed 's/testsuite-/TEST-/')" "$f"
  done
}

if ((list)); then
  cases | cut -f1 | { [[ -n $only ]] && grep -E -- "$only" || cat; }
  exit 0
fi

[[ $(id -u) == 0 ]] || skip "needs root for its mount namespaces (running as uid $(id -u))"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
unshare --mount true 2>/dev/null || skip "cannot make a mount namespace here (unshare --mount failed)"

# run LABEL TOOL REPORT: every case with these tools (TOOL: `systemd` or
# the path of Slate's binary).
run_suite() {
  local label=$1 tool=$2 report=$3
  local logs="$work/$label/logs"
  rm -rf "${work:?}/$label"
  mkdir -p "$logs"
  : >"$report"
  local passed=0 failed=0 name log fields
  echo "== systemd's test suites against $label"
  while IFS=$'\t' read -r -a fields; do
    name=${fields[0]}
    [[ -n $only && ! $name =~ $only ]] && continue
    log="$logs/$(echo "$name" | tr -c 'A-Za-z0-9.-' '_').log"
    if timeout 300 unshare --mount --propagation private -- \
      "$self" --inside "$data" "$tool" "${fields[@]:1}" >"$log" 2>&1; then
      echo "ok   $name"
      echo "PASS $name" >>"$report"
      ((passed++))
    else
      echo "FAIL $name (log: $log)"
      tail -n 12 "$log" | sed 's/^/     | /'
      echo "FAIL $name" >>"$report"
      ((failed++))
    fi
  done < <(cases)
  echo "$label: $passed passed, $failed failed"
  ((failed == 0))
}

[[ -n $work ]] || work=$(cd "$here/../.." && pwd)/target/upstream
mkdir -p "$work"
work=$(cd "$work" && pwd)

systemd_tmpfiles=$(command -v systemd-tmpfiles || true)
systemd_sysusers=$(command -v systemd-sysusers || true)

if ((control || compare)); then
  [[ -n $systemd_tmpfiles && -n $systemd_sysusers ]] ||
    skip "systemd-tmpfiles or systemd-sysusers is not installed (the control)"
  echo "systemd: $("$systemd_tmpfiles" --version | head -n1)"
fi
if ((!control || compare)); then
  [[ -n $slate ]] || slate=$(cd "$here/../.." && pwd)/target/debug/slate
  [[ -x $slate ]] || die "no Slate binary at $slate (build it, or pass --slate BIN)"
  slate=$(cd "$(dirname "$slate")" && pwd)/$(basename "$slate")
  case $slate in
    /run/*) die "Slate's binary $slate would be hidden by the namespace's fresh /run" ;;
  esac
fi
case $data in
  /run/*) die "--data $data would be hidden by the namespace's fresh /run" ;;
esac

status=0
if ((compare)); then
  run_suite systemd systemd "$work/systemd.report"
  run_suite slate "$slate" "$work/slate.report"
  sys_pass=$(grep -c '^PASS' "$work/systemd.report")
  slate_pass=$(grep -c '^PASS' "$work/slate.report")
  total=$(wc -l <"$work/systemd.report")
  echo "== systemd passes $sys_pass of $total cases, Slate passes $slate_pass of $total"
  if ((sys_pass == 0)); then
    echo "no case passes with systemd's own binaries: the harness is broken"
    status=1
  fi
  # Cases systemd passes that Slate fails.
  regressions=$(grep '^PASS' "$work/systemd.report" | sed 's/^PASS //' |
    grep -Fxv -f <(grep '^PASS' "$work/slate.report" | sed 's/^PASS //') || true)
  if [[ -n $regressions ]]; then
    echo "passing with systemd, failing with Slate:"
    echo "${regressions//$'\n'/$'\n'  }" | sed '1s/^/  /'
    status=1
  fi
  exit $status
elif ((control)); then
  run_suite systemd systemd "$work/systemd.report"
else
  run_suite slate "$slate" "$work/slate.report"
fi
