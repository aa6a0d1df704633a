#!/bin/sh
# Runs a command inside a throwaway network namespace that has a TAP for
# the lwIP backend, then removes the namespace:
#
#   lwip_ns.sh LWIP_BUILT COMMAND [ARGS...]
#
# LWIP_BUILT is 1 when the build has the lwIP backend (else: skipped).
# In namespace sn-lt-<pid>: TAP snlw0, kernel side 10.93.0.1/24 (the
# test's kernel clients and servers), up; the program under test attaches
# to it with --backend lwip --tap snlw0 --addr 10.93.0.2/24 (exported as
# SN_LWIP_TAP and SN_LWIP_ADDR for COMMAND); lo up. slotnet-load targets a
# private address only from an isolated namespace such as this one.
# The namespace and everything in it go on every way out (exit, failure,
# INT, TERM, HUP); namespaces of earlier runs that were killed (their pid
# gone) are removed at start, the processes in them killed first.
# Exit: COMMAND's status, or 77 (skipped) without lwIP, root, /dev/net/tun,
# ip, or when namespaces cannot be made here.
set -u
[ $# -ge 2 ] || { echo "usage: $0 LWIP_BUILT COMMAND [ARGS...]" >&2; exit 2; }
skip() { echo "lwip_ns: skipped: $*" >&2; exit 77; }
[ "$1" = 1 ] || skip "this build has no lwIP backend (liblwip-dev not found)"
shift
[ "$(id -u)" = 0 ] || skip "needs root (network namespace, TAP)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null 2>&1 || skip "no ip (iproute2)"

ns_gone() { # NS: kill what runs in it (ours: it is a test namespace), delete it
  for p in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  ip netns del "$1" 2>/dev/null
}

for f in /var/run/netns/sn-lt-*; do
  [ -e "$f" ] || continue
  n=${f##*/}
  kill -0 "${n#sn-lt-}" 2>/dev/null || ns_gone "$n"
done

NS="sn-lt-$$"
TAP=snlw0
PID=""
cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  fi
  # A namespace outlives `ip netns del` while a process is inside it.
  ns_gone "$NS"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace"
x() { ip netns exec "$NS" "$@"; }
ip -n "$NS" link set lo up || exit 1
# No IPv6 chatter (router solicitations, MLD) on the TAP.
x sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
ip -n "$NS" tuntap add dev "$TAP" mode tap || skip "cannot create a TAP device"
ip -n "$NS" addr add 10.93.0.1/24 dev "$TAP" || exit 1
ip -n "$NS" link set "$TAP" up || exit 1

x env SN_LWIP_TAP="$TAP" SN_LWIP_ADDR=10.93.0.2/24 SN_LWIP_NS="$NS" "$@" &
PID=$!
wait "$PID"
rc=$?
PID=""
exit $rc
