#!/bin/sh
# Runs a command inside a throwaway network namespace that has a TAP for
# the lwIP backend, then removes the namespace:
#
#   lwip_ns.sh LWIP_BUILT COMMAND [ARGS...]
#
# LWIP_BUILT is 1 when the build has the lwIP backend (else: skipped).
# In namespace sn-lt-<pid>-<start> (<start>: this shell's start time,
# field 22 of /proc/<pid>/stat, so a reused pid is told apart): TAP snlw0, kernel side 10.93.0.1/24 (the
# test's kernel clients and servers), up; the program under test attaches
# to it with --backend lwip --tap snlw0 --addr 10.93.0.2/24 (exported as
# SN_LWIP_TAP and SN_LWIP_ADDR for COMMAND); lo up. slotnet-load targets a
# private address only from an isolated namespace such as this one.
# The namespace and everything in it go on every way out (exit, failure,
# INT, TERM, HUP); namespaces of earlier runs that were killed (their
# creator's pid gone, or now another process with a different start time)
# are removed at start, the processes in them killed first.
# COMMAND runs as `ip netns exec` itself (which execs it), so a signal to
# the pid this script waits on reaches the program (graceful TERM/INT,
# sanitizer reports).
# Exit: COMMAND's status, or 77 (skipped) without lwIP, root, /dev/net/tun,
# ip, or when namespaces cannot be made here (a probe namespace fails); 1
# when the preflight passed but the namespace or its setup then fails.
#
# Sourced with SN_NS_LIB=1 it only defines the shared functions (ns_*),
# for tests/net/lwip_netns.sh.
# ---- Shared with tests/net/lwip_netns.sh -----------------------------------

# Start time of PID (field 22 of /proc/PID/stat; the comm field may hold
# spaces and parentheses, so count from its closing one). Empty if gone.
ns_pid_start() {
  _s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  _s=${_s##*) }
  # shellcheck disable=SC2086
  set -- $_s
  shift 19
  echo "$1"
}

# NS: kill what runs in it (ours: it is a test namespace), then delete it.
ns_gone() {
  for _p in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$_p" 2>/dev/null; done
  ip netns del "$1" 2>/dev/null
}

# PREFIX: remove namespaces PREFIX<pid>-<start> whose creator is gone (pid
# dead, or alive with another start time: reused). Old names without a
# start time go when the pid is dead.
ns_sweep() {
  for _f in /var/run/netns/"$1"*; do
    [ -e "$_f" ] || continue
    _n=${_f##*/}
    _id=${_n#"$1"}
    _pid=${_id%%-*}
    case $_pid in '' | *[!0-9]*) continue ;; esac
    _st=""
    [ "$_id" = "$_pid" ] || _st=${_id#*-}
    _now=$(ns_pid_start "$_pid")
    if [ -z "$_now" ] || { [ -n "$_st" ] && [ "$_now" != "$_st" ]; }; then
      ns_gone "$_n"
    fi
  done
}

# SKIPFN: the preflight; calls SKIPFN (which exits 77) when this host cannot
# run namespace tests at all.
ns_preflight() {
  [ "$(id -u)" = 0 ] || "$1" "needs root (network namespace, TAP)"
  [ -c /dev/net/tun ] || "$1" "no /dev/net/tun"
  command -v ip >/dev/null 2>&1 || "$1" "no ip (iproute2)"
  _probe="sn-probe-$$"
  ip netns add "$_probe" 2>/dev/null || "$1" "cannot create a network namespace"
  ip netns del "$_probe" 2>/dev/null
}

# PREFIX: the name of this run's namespace.
ns_name() { echo "$1$$-$(ns_pid_start $$)"; }

# Makes this run's namespace NS (prefix $1) and, only once it exists, the
# trap that stops the program under test (PID, set by the caller) and
# removes the namespace on every way out. A failed add is a failure: the
# preflight has shown that namespaces can be made.
ns_start() {
  NS=$(ns_name "$1")
  PID=""
  ip netns add "$NS" || fail "cannot create network namespace $NS"
  trap ns_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}
ns_cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  fi
  # A namespace outlives `ip netns del` while a process is inside it.
  ns_gone "$NS"
}

[ "${SN_NS_LIB:-0}" = 1 ] && return 0

# ---- This script -----------------------------------------------------------

set -u
[ $# -ge 2 ] || { echo "usage: $0 LWIP_BUILT COMMAND [ARGS...]" >&2; exit 2; }
skip() { echo "lwip_ns: skipped: $*" >&2; exit 77; }
fail() { echo "lwip_ns: FAILED: $*" >&2; exit 1; }
[ "$1" = 1 ] || skip "this build has no lwIP backend (liblwip-dev not found)"
shift
ns_preflight skip
ns_sweep sn-lt-

TAP=snlw0
ns_start sn-lt-

x() { ip netns exec "$NS" "$@"; }
ip -n "$NS" link set lo up || exit 1
# No IPv6 chatter (router solicitations, MLD) on the TAP.
x sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
ip -n "$NS" tuntap add dev "$TAP" mode tap || skip "cannot create a TAP device"
ip -n "$NS" addr add 10.93.0.1/24 dev "$TAP" || exit 1
ip -n "$NS" link set "$TAP" up || exit 1

# Not through x(): a backgrounded function is a subshell, and its pid is
# not the program's. `ip netns exec` execs COMMAND, so PID is COMMAND's.
ip netns exec "$NS" env SN_LWIP_TAP="$TAP" SN_LWIP_ADDR=10.93.0.2/24 SN_LWIP_NS="$NS" "$@" &
PID=$!
wait "$PID"
rc=$?
PID=""
exit $rc
