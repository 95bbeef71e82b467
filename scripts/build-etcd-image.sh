#!/usr/bin/env bash
# Builds the etcd image testcontainers uses from Debian's etcd binary: no registry is reachable,
# so the image is a tarball of the binary, its libraries and the dynamic loader (`docker import`).
set -euo pipefail
image=${BULKHEAD_ETCD_IMAGE:-bulkhead/etcd:local}
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
printf '==> building %s from /usr/bin/etcd\n' "$image" >&2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
bin=$(readlink -f /usr/bin/etcd)
mkdir -p "$root/usr/bin" "$root/tmp" "$root/var/lib/etcd"
cp "$bin" "$root/usr/bin/etcd"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" -c . | docker import --change 'ENTRYPOINT ["/usr/bin/etcd"]' - "$image" >/dev/null
