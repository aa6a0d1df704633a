#!/bin/sh
# Installs the Debian packages slotnet builds and tests with, if missing.
# As root it runs apt-get; otherwise it prints the exact line to run.
set -e
PKGS="cmake make gcc pkg-config libcmocka-dev libhttp-parser-dev libcjson-dev zlib1g-dev iproute2 curl python3 gnuplot-nox ${SN_EXTRA_PKGS:-}"
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
