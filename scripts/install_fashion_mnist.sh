#!/usr/bin/env bash
# Fashion-MNIST's IDX files come from Debian's dataset-fashion-mnist package.
set -u
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's dataset-fashion-mnist into $DIR"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q dataset-fashion-mnist >/dev/null
  }
  [ -f "$DIR/train-images-idx3-ubyte.gz" ] && exit 0
fi
cat >&2 <<MSG
Fashion-MNIST is not installed. Either run as root: apt-get install dataset-fashion-mnist
or put the four IDX files in a folder and pass data.root=<folder>, or pass data.download=true.
MSG
exit 0
