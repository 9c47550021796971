#!/usr/bin/env bash
# Stage 1: a Debian bookworm root made with debootstrap (minbase + kernel, systemd, udev,
# initramfs-tools, libubootenv-tool), cached as $CACHE_DIR/base-<hash>/. Prints its path.
# Nothing of Gantry is in it: that is stage 2 (build-rootfs.sh), so a code change does not
# re-run debootstrap.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need debootstrap

SUITE=bookworm
MIRROR="${GANTRY_VM_MIRROR:-http://deb.debian.org/debian}"
INCLUDE=linux-image-amd64,systemd,systemd-sysv,udev,initramfs-tools,libubootenv-tool,kmod,iproute2
key=$(hash_inputs "$0" "$SUITE" "$MIRROR" "$INCLUDE")
out="$CACHE_DIR/base-$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

log "debootstrap $SUITE (minbase + $INCLUDE) into $out"
rm -rf "$out" "$out.tmp"
start=$SECONDS
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$out.tmp" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
  die "debootstrap failed, see $CACHE_DIR/debootstrap.log"
# The initramfs only needs to find an ext4 root on virtio: a small, targeted one boots faster.
cat >"$out.tmp/etc/initramfs-tools/conf.d/gantry-vm" <<'EOF'
MODULES=list
COMPRESS=gzip
EOF
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$out.tmp/etc/initramfs-tools/modules"
chroot "$out.tmp" update-initramfs -u -k all >>"$CACHE_DIR/debootstrap.log" 2>&1 || die "update-initramfs failed"
chroot "$out.tmp" apt-get clean
rm -rf "$out.tmp/var/lib/apt/lists"/*
touch "$out.tmp/.complete"
mv "$out.tmp" "$out"
log "base root built in $((SECONDS - start)) s ($(du -sh "$out" | cut -f1))"
# Older bases are of no further use.
find "$CACHE_DIR" -maxdepth 1 -name 'base-*' ! -name "base-$key" -exec rm -rf {} +
echo "$out"
