#!/usr/bin/env bash
# data=fortunes reads Debian's fortunes package (topic files under /usr/share/games/fortunes).
set -u
DIR=/usr/share/games/fortunes
if [ -f "$DIR/computers" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's fortunes into $DIR"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q fortunes >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q fortunes >/dev/null
  }
  [ -f "$DIR/computers" ] && exit 0
fi
cat >&2 <<MSG
Debian's fortunes is not installed (data=fortunes needs it). Either run as root: apt-get install fortunes
or pass data.root=<folder of fortune files>.
MSG
exit 0
