#!/usr/bin/env bash
# Debian packages the VM test needs on the host (root; apt only installs what is missing).
set -euo pipefail
PKGS=(qemu-system-x86 u-boot-qemu u-boot-tools debootstrap dosfstools mtools fdisk e2fsprogs libubootenv-tool binutils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || {
  echo "vm: need root to install: ${missing[*]}" >&2
  exit 1
}
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
