#!/bin/sh
# Installs the Debian tools the interop tests and benchmarks drive, when root and missing.
set -e
need=""
command -v sipp >/dev/null 2>&1 || need="$need sip-tester"
command -v baresip >/dev/null 2>&1 || need="$need baresip-core"
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
command -v sox >/dev/null 2>&1 || need="$need sox"
ls /usr/lib/*/libopus.so.0 >/dev/null 2>&1 || need="$need libopus0"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages:$need (run as root, or install them yourself)" >&2
  exit 1
fi
echo "installing Debian packages:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
