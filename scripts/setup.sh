#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) for Bulkhead, idempotently.
#   setup.sh run   what running needs: packages, kernel-header links, bpffs, the virtualenv
#   setup.sh test  also what the tests need: a running dockerd and the local etcd image
set -euo pipefail
mode=${1:-test}
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${BULKHEAD_VENV:-$here/.venv}
stamp=$venv/.setup-stamp
say() { printf '==> %s\n' "$*" >&2; }

packages=(etcd-server etcd-client python3-bpfcc python3-venv linux-headers-amd64 iproute2
          iputils-ping iperf3 curl)
[ "$mode" = test ] && packages+=(docker.io)
# The console's browser tests drive Debian's Chromium through its chromedriver (never a
# downloaded browser).
[ "$mode" = test ] && packages+=(chromium chromium-driver)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

# bcc compiles against /lib/modules/$(uname -r)/{build,source}; this kernel ships no headers,
# Debian's generic headers work for tc programs (stable UAPI structs).
kdir=/lib/modules/$(uname -r)
if [ ! -e "$kdir/build" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
  common=$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -1)
  say "linking kernel headers $hdr for bcc"
  mkdir -p "$kdir"
  ln -sfn "$hdr" "$kdir/build"
  ln -sfn "$common" "$kdir/source"
fi

if ! mountpoint -q /sys/fs/bpf; then
  say "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

# bcc comes from Debian, so the venv must be Debian's python with system site-packages.
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  say "installing Python packages"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e "$here[dev]"
  touch "$stamp"
fi

if [ "$mode" = test ]; then
  if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    (setsid dockerd >/var/log/bulkhead-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { say "dockerd did not start, see /var/log/bulkhead-dockerd.log"; exit 1; }
  fi
  "$here/scripts/build-etcd-image.sh"
fi
say "setup ($mode) done"
