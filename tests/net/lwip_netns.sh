#!/bin/sh
# Runs a test program against the lwIP backend through a TAP, inside a
# throwaway network namespace:
#
#   lwip_netns.sh PROGRAM [ARGS...]
#
# runs `PROGRAM ARGS... --backend lwip --tap sntap0 --addr 10.93.0.2` in a
# namespace sn-lw-<pid> where sntap0 is a TAP whose kernel side is
# 10.93.0.1/24 (the test's kernel clients) and lo is up (the test reserves
# ports on it). The namespace and the TAP in it are removed afterwards, also
# when the program fails or the script is interrupted.
# Exit 77 (skipped) without root, /dev/net/tun or ip, or when namespaces
# cannot be made here (a container without CAP_SYS_ADMIN).
set -u
[ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }
skip() { echo "lwip_netns: skipped: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespace, TAP)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null 2>&1 || skip "no ip (iproute2)"

NS="sn-lw-$$"
TAP=sntap0
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  # A namespace outlives `ip netns del` while a process is inside it: the
  # program is gone by now. Deleting it removes the TAP too.
  ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace"
ip -n "$NS" link set lo up || exit 1
# No IPv6 chatter (router solicitations, MLD) on the TAP.
ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6' 2>/dev/null
ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null
ip -n "$NS" tuntap add dev "$TAP" mode tap || skip "cannot create a TAP device"
ip -n "$NS" addr add 10.93.0.1/24 dev "$TAP" || exit 1
ip -n "$NS" link set "$TAP" up || exit 1

ip netns exec "$NS" "$@" --backend lwip --tap "$TAP" --addr 10.93.0.2 &
PID=$!
wait "$PID"
rc=$?
PID=""
exit $rc
