#!/bin/sh
# Runs a test program against the lwIP backend through a TAP, inside a
# throwaway network namespace:
#
#   lwip_netns.sh PROGRAM [ARGS...]
#
# runs `PROGRAM ARGS... --backend lwip --tap sntap0 --addr 10.93.0.2` in a
# namespace sn-lw-<pid>-<start> (<start>: this shell's start time, field 22
# of /proc/<pid>/stat) where sntap0 is a TAP whose kernel side is
# 10.93.0.1/24 (the test's kernel clients) and lo is up (the test reserves
# ports on it). The namespace, the TAP and every process in it are removed
# afterwards, also when the program fails or the script is interrupted;
# namespaces of earlier runs whose creator is gone (pid dead or reused) are
# removed at start. The functions (preflight, sweep, removal) are those of
# tests/lwip/lwip_ns.sh, sourced, so the two scripts behave alike.
# Exit: PROGRAM's status; 77 (skipped) without root, /dev/net/tun or ip, or
# when namespaces cannot be made here (a container without CAP_SYS_ADMIN: a
# probe namespace fails); 1 when the preflight passed but the namespace or
# its setup then fails.
set -u
[ $# -ge 1 ] || { echo "usage: $0 PROGRAM [ARGS...]" >&2; exit 2; }
skip() { echo "lwip_netns: skipped: $*" >&2; exit 77; }
fail() { echo "lwip_netns: FAILED: $*" >&2; exit 1; }
LIB="$(dirname "$0")/../lwip/lwip_ns.sh"
[ -r "$LIB" ] || fail "missing $LIB"
SN_NS_LIB=1 . "$LIB"
ns_preflight skip
ns_sweep sn-lw-

TAP=sntap0
ns_start sn-lw-

ip -n "$NS" link set lo up || exit 1
# No IPv6 chatter (router solicitations, MLD) on the TAP.
ip netns exec "$NS" sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
ip -n "$NS" tuntap add dev "$TAP" mode tap || skip "cannot create a TAP device"
ip -n "$NS" addr add 10.93.0.1/24 dev "$TAP" || exit 1
ip -n "$NS" link set "$TAP" up || exit 1

# `ip netns exec` execs PROGRAM: PID is the program's own.
ip netns exec "$NS" "$@" --backend lwip --tap "$TAP" --addr 10.93.0.2 &
PID=$!
wait "$PID"
rc=$?
PID=""
exit $rc
