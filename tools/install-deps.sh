#!/bin/sh
# Installs the Debian packages slotnet needs, if missing: `install-deps.sh`
# for building and running, `install-deps.sh test` adds what the test suite
# drives (headless Chromium; clang and its libFuzzer runtime for fuzz/).
# bench/vs-nginx.sh installs nginx itself.
# As root it runs apt-get; otherwise it prints the exact line to run.
set -e
PKGS="make gcc libc6-dev cmake pkg-config libcmocka-dev libhttp-parser-dev libcjson-dev zlib1g-dev python3 curl iproute2 gnuplot-nox liblwip-dev"
case "${1:-}" in
  test) PKGS="$PKGS chromium clang libclang-rt-14-dev" ;; # clang + libFuzzer: fuzz/
  "") ;;
  *) echo "usage: $0 [test]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "install-deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
else
  echo "install-deps: missing Debian packages. Run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
