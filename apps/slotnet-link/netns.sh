#!/bin/sh
# Namespaces for slotnet-link: a client and a server side with the emulator
# between them.
#
#   netns.sh up ID [posix|lwip] [static-arp]
#                                 make sl-c-ID and sl-s-ID; prints shell
#                                 assignments (eval them) incl. SL_LINK_ARGS
#   netns.sh down ID              remove both (and everything in them)
#
# posix: both sides are kernel stacks.
#   sl-c-ID: TAP slc0, 10.94.0.1/24, MAC 02:94:00:00:00:01   (--a tap:slc0@sl-c-ID)
#   sl-s-ID: TAP sls0, 10.94.0.2/24, MAC 02:94:00:00:00:02   (--b tap:sls0@sl-s-ID)
#   The emulator owns both TAPs: what one kernel sends, it delays and writes
#   into the other. A plain TAP carries full checksums and no GSO frames, so
#   no offload needs turning off.
# lwip: the server is the lwIP backend.
#   sl-c-ID: as above.
#   sl-s-ID: TAP sls0 with no address (kernel side silent); the lwIP process
#   attaches to it (--tap sls0 --addr 10.94.0.2) and owns its fd. The
#   emulator uses a packet socket on sls0's netdev (--b pkt:sls0@sl-s-ID):
#   what lwIP writes arrives there as received frames, and what the
#   emulator sends there is delivered to lwIP's fd.
#
# static-arp (posix only): permanent neighbour entries on both sides, so no
# ARP crosses the link: every frame the emulator sees is the test's own
# (exact loss counts; a one-way blackhole stays one-way; real ARP over a
# lossy link is what you get without it).
#
# Both namespaces have IPv6 off (no router solicitations or MLD on the
# link) and lo up. Deleting a namespace removes its TAP; a namespace
# outlives `ip netns del` while a process is still inside it, so stop the
# processes first.
set -u
usage() { echo "usage: $0 up ID [posix|lwip] [static-arp] | down ID" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 id=$2 mode=${3:-posix} arp=${4:-}
C="sl-c-$id" S="sl-s-$id"

no_ipv6() {
  ip netns exec "$1" sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
  return 0
}

tap() { # ns name mac [addr]
  ip -n "$1" tuntap add dev "$2" mode tap &&
  ip -n "$1" link set "$2" address "$3" &&
  { [ -z "${4:-}" ] || ip -n "$1" addr add "$4" dev "$2"; } &&
  ip -n "$1" link set "$2" up
}

case $cmd in
up)
  case $mode in posix|lwip) ;; *) usage ;; esac
  case $arp in ''|static-arp) ;; *) usage ;; esac
  [ "$mode$arp" = lwipstatic-arp ] && usage
  for ns in "$C" "$S"; do
    ip netns add "$ns" || { "$0" down "$id"; exit 1; }
    ip -n "$ns" link set lo up
    no_ipv6 "$ns"
  done
  tap "$C" slc0 02:94:00:00:00:01 10.94.0.1/24 || { "$0" down "$id"; exit 1; }
  if [ "$mode" = posix ]; then
    tap "$S" sls0 02:94:00:00:00:02 10.94.0.2/24 || { "$0" down "$id"; exit 1; }
    b="tap:sls0@$S"
    if [ -n "$arp" ]; then
      ip -n "$C" neigh replace 10.94.0.2 lladdr 02:94:00:00:00:02 dev slc0 nud permanent &&
      ip -n "$S" neigh replace 10.94.0.1 lladdr 02:94:00:00:00:01 dev sls0 nud permanent ||
        { "$0" down "$id"; exit 1; }
    fi
  else
    tap "$S" sls0 02:94:00:00:00:fe || { "$0" down "$id"; exit 1; }
    b="pkt:sls0@$S"
  fi
  echo "SL_CLIENT_NS=$C"
  echo "SL_SERVER_NS=$S"
  echo "SL_CLIENT_IP=10.94.0.1"
  echo "SL_SERVER_IP=10.94.0.2"
  echo "SL_LINK_ARGS='--a tap:slc0@$C --b $b'"
  ;;
down)
  rc=0
  for ns in "$C" "$S"; do
    if [ -e "/var/run/netns/$ns" ]; then
      ip netns del "$ns" || rc=1
    fi
  done
  exit $rc
  ;;
*) usage ;;
esac
