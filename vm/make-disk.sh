#!/usr/bin/env bash
# Stage 3 (per run, a few seconds): the VM's disk, made without loop devices or mounts.
#   GPT  p1 boot      FAT: boot.scr (vm/boot.cmd), uboot.env (boot_slot=A, bootlimit=3)
#        p2 rootfs_a  the factory slot image
#        p3 rootfs_b  empty (zeros): Gantry sees it as empty until an update is written
#        p4 data      ext4: Gantry's data dir and the site provisioning (feed, keys, password)
#        p5 app_a     the factory application image (vm/make-app.sh), app_slot=A
#        p6 app_b     empty: the `app` component class's other slot
#
# usage: make-disk.sh OUT_DIR SLOT_A_IMAGE SITE_DIR APP_A_IMAGE
#   SITE_DIR holds gantry.env (site env: feed URL, admin password), root.json (TUF root) and
#   vendor.pem (bundle-signing public key).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need sfdisk mkfs.vfat mcopy mkfs.ext4 mkimage mkenvimage

out=$1 slot_a=$2 site=$3 app_a=$4
for f in gantry.env root.json vendor.pem; do [ -f "$site/$f" ] || die "$site/$f is missing"; done
mkdir -p "$out"
work="$out/disk-parts"
rm -rf "$work" && mkdir -p "$work"

MIB=$((1024 * 1024))
BOOT_MIB=16 SLOT_MIB=${GANTRY_VM_SLOT_MIB:-512} DATA_MIB=256 APP_MIB=16
slot_bytes=$(stat -c %s "$slot_a")
[ "$slot_bytes" -le $((SLOT_MIB * MIB)) ] || die "slot image $slot_a ($slot_bytes bytes) exceeds the ${SLOT_MIB} MiB slot"
app_bytes=$(stat -c %s "$app_a")
[ "$app_bytes" -le $((APP_MIB * MIB)) ] || die "app image $app_a ($app_bytes bytes) exceeds the ${APP_MIB} MiB app slot"

# p1: boot script + U-Boot environment on FAT.
mkimage -q -A x86 -O linux -T script -C none -n "gantry A/B" -d "$VM_DIR/boot.cmd" "$work/boot.scr"
printf '%s\n' boot_slot=A upgrade_available=0 bootcount=0 bootlimit=3 app_slot=A >"$work/uboot-env.txt"
mkenvimage -s 0x4000 -o "$work/uboot.env" "$work/uboot-env.txt"
mkfs.vfat -n BOOT -C "$work/boot.img" $((BOOT_MIB * 1024)) >/dev/null
mcopy -i "$work/boot.img" "$work/boot.scr" "$work/uboot.env" ::/

# p4: the data partition, as provisioning leaves it.
mkdir -p "$work/data/site" "$work/data/data/trusted-keys"
cp "$site/gantry.env" "$site/root.json" "$work/data/site/"
cp "$site/vendor.pem" "$work/data/data/trusted-keys/vendor.pem"
chmod 0600 "$work/data/site/gantry.env"
mkfs.ext4 -q -F -L data -m 0 -d "$work/data" "$work/data.img" "${DATA_MIB}M"

disk="$out/disk.img"
rm -f "$disk"
s=2048 # sectors of 512 bytes; 1 MiB alignment
p1=$s p2=$((p1 + BOOT_MIB * 2048)) p3=$((p2 + SLOT_MIB * 2048)) p4=$((p3 + SLOT_MIB * 2048))
p5=$((p4 + DATA_MIB * 2048)) p6=$((p4 + DATA_MIB * 2048 + APP_MIB * 2048))
end=$((p6 + APP_MIB * 2048 + 2048))
truncate -s $((end * 512)) "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
unit: sectors
start=$p1, size=$((BOOT_MIB * 2048)), type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=boot
start=$p2, size=$((SLOT_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs_a
start=$p3, size=$((SLOT_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=rootfs_b
start=$p4, size=$((DATA_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
start=$p5, size=$((APP_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=app_a
start=$p6, size=$((APP_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=app_b
EOF
put() { dd if="$1" of="$disk" bs=1M seek=$(($2 / 2048)) conv=notrunc,sparse status=none; }
put "$work/boot.img" $p1
put "$slot_a" $p2
put "$work/data.img" $p4
put "$app_a" $p5
rm -rf "$work"
echo "$disk"
