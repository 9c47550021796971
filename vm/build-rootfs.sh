#!/usr/bin/env bash
# Stage 2: the slot images. From the stage-1 Debian root: the host's Node 20, Gantry (dist/ from
# `npm run build`, production node_modules, migrations, web assets), the guest config in vm/guest/,
# trimmed; then one ext4 image per release with mkfs.ext4 -d (no loop devices, no mounts):
#   slot-v5.0.4.img         the factory image written to slot A
#   slot-v5.0.5.img         bundle 1: a good update
#   slot-v5.0.6-broken.img  bundle 2: Gantry cannot start (its config names a slot device that
#                           does not exist), so systemd reboots after 3 failed starts and U-Boot's
#                           boot count runs out
# Cached as $CACHE_DIR/rootfs-<hash>/ keyed by every input. Prints that directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need mkfs.ext4 strip

[ -f "$REPO_DIR/dist/server-bundle/main.cjs" ] || die "dist/ is missing: run npm run build first"
base=$("$VM_DIR/build-base.sh")

# Gantry as it is installed on the gateway, staged so its hash is an input of the images.
app="$CACHE_DIR/app"
rm -rf "$app" && mkdir -p "$app/drizzle" "$app/web"
(
  cd "$REPO_DIR"
  cp -a dist "$app/dist"
  cp -a bin "$app/bin"
  rm -rf "$app/dist/test" "$app/dist/bench"
  find "$app/dist" -name '*.map' -delete
  # The V8 code cache the build ships beside the bundle (scripts/build-server.ts) differs from one
  # build to the next of the same bundle (V8's serializer is not deterministic), and is named after
  # that bundle: it is installed, but kept out of the key, so an unchanged Gantry keeps its images.
  rm -rf "$CACHE_DIR/app-v8cache" && mkdir -p "$CACHE_DIR/app-v8cache"
  find "$app/dist" -name '*.v8cache' -exec mv -t "$CACHE_DIR/app-v8cache" {} +
  cp -a drizzle/migrations "$app/drizzle/migrations"
  if [ -d web/public ]; then cp -a web/public "$app/web/public"; fi
  cp package.json "$app/package.json"
  # Production dependencies only, as the lock file resolved them (no install, no network): every
  # package-lock.json entry that is not dev-only. Not `npm ls --omit=dev`, which also lists (and
  # fails on) extraneous packages of a shared node_modules, under their real paths.
  node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const [p, e] of Object.entries(lock.packages)) {
      if (!p.startsWith("node_modules/") || e.dev || e.devOptional) continue;
      if (fs.existsSync(p)) console.log(p);
      else if (!e.optional) throw new Error(p + " is in package-lock.json but not installed");
    }' | LC_ALL=C sort -u >"$CACHE_DIR/app-deps.txt"
  [ -s "$CACHE_DIR/app-deps.txt" ] || die "package-lock.json lists no production dependencies"
  # shellcheck disable=SC2046
  cp -a --parents $(cat "$CACHE_DIR/app-deps.txt") "$app/"
)
# better-sqlite3's build tree: only the addon is loaded.
find "$app/node_modules/better-sqlite3" -path '*/build/*' \( -name '*.o' -o -name '*.a' -o -name '*.d' -o -name '*.mk' -o -name Makefile \) -delete 2>/dev/null || true
rm -rf "$app/node_modules/better-sqlite3/deps" "$app/node_modules/better-sqlite3/src" \
  "$app/node_modules/better-sqlite3/build/Release/obj" "$app/node_modules/better-sqlite3/build/Release/obj.target" \
  "$app/node_modules/better-sqlite3/build/Release/.deps" "$app/node_modules/better-sqlite3/build/deps"

# The host's Node 20 (Debian bookworm's is 18). Dynamically linked against libc/libstdc++/libgcc_s
# only, all in the minbase root; stripped of its debug info (~100 MB less to ship per slot).
node_bin="$CACHE_DIR/node-$(sha256sum /usr/bin/node | cut -c1-16)"
if [ ! -x "$node_bin" ]; then
  strip -o "$node_bin.tmp" /usr/bin/node
  mv "$node_bin.tmp" "$node_bin"
fi

key=$(hash_inputs "$0" "base:$(basename "$base")" "$node_bin" "$app" "$VM_DIR/guest")
out="$CACHE_DIR/rootfs-$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
start=$SECONDS
log "building slot images into $out"
rm -rf "$out" && mkdir -p "$out"
root="$out/root"
cp -a "$base" "$root"
rm -f "$root/.complete"

# Trim what a gateway does not need (docs, locales, drivers for hardware a VM does not have).
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,linda} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
# Kernel modules: only what a virtio VM with ext4 slots and a FAT boot partition loads (with their
# dependencies); the other ~390 MB of drivers would be shipped in every bundle for nothing.
keep_mods="virtio_pci virtio_blk virtio_net virtio_rng virtio_console ext4 vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859-1 crc32c_generic crc32c-intel af_packet rng_core autofs4"
chroot "$root" sh -c "for m in $keep_mods; do modprobe -S '$kver' --show-depends \$m 2>/dev/null; done" |
  awk '$1 == "insmod" { print $2 }' | sort -u >"$out/modules.keep"
[ -s "$out/modules.keep" ] || die "no kernel modules resolved to keep"
find "$root/lib/modules/$kver/kernel" -name '*.ko*' | sed "s#^$root##" | sort | comm -23 - "$out/modules.keep" | sed "s#^#$root#" | xargs rm -f
find "$root/lib/modules/$kver/kernel" -type d -empty -delete
cp -a "$VM_DIR/guest/." "$root/"
chroot "$root" depmod "$kver"
# Fixed file names for the boot script (regular files: U-Boot's ext4 reader, not symlinks).
cp "$root/boot/vmlinuz-$kver" "$root/boot/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$root/boot/initrd.img"
rm -f "$root/vmlinuz" "$root/vmlinuz.old" "$root/initrd.img" "$root/initrd.img.old" "$root/boot/vmlinuz-$kver" "$root/boot/initrd.img-$kver"

install -m 0755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/opt/gantry" "$root/opt/app" "$root/uboot" "$root/var/lib/gantry"
cp -a "$app/." "$root/opt/gantry/"
find "$CACHE_DIR/app-v8cache" -name '*.v8cache' -exec cp -t "$root/opt/gantry/dist/server-bundle" {} +
# A fixed machine id: not a first boot (systemd-firstboot would prompt on the console).
echo 5e1c0de0ba5eba11fee1dead00c0ffee >"$root/etc/machine-id"
ln -sf /dev/null "$root/etc/systemd/system/systemd-firstboot.service"
systemctl --root="$root" enable systemd-networkd.service gantry-vm-safety.service gantry-vm-app.service gantry.service serial-getty@ttyS0.service >/dev/null 2>&1
systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
chroot "$root" /usr/local/bin/node --version >/dev/null || die "the copied node does not run in the guest root"

mkimg() { # VERSION FILE
  local version=$1 file=$2 kb
  echo "$version" >"$root/etc/gantry-version"
  kb=$(du -sk "$root" | cut -f1)
  kb=$((kb + kb / 10 + 32768))
  mkfs.ext4 -q -F -L "gantry-$version" -m 0 -d "$root" "$file" "${kb}k"
}
mkimg v5.0.4 "$out/slot-v5.0.4.img"
mkimg v5.0.5 "$out/slot-v5.0.5.img"
cp "$root/etc/gantry/gantry.env" "$out/gantry.env.good"
sed -i 's#^GANTRY_LINUX_SLOTS=.*#GANTRY_LINUX_SLOTS=A=/dev/disk/by-partlabel/rootfs_a,B=/dev/disk/by-partlabel/rootfs_bb#' "$root/etc/gantry/gantry.env"
mkimg v5.0.6 "$out/slot-v5.0.6-broken.img"
cp "$out/gantry.env.good" "$root/etc/gantry/gantry.env"
echo "$kver" >"$out/kernel-version"
rm -rf "$root"
touch "$out/.complete"
log "slot images built in $((SECONDS - start)) s: $(du -h --apparent-size "$out"/*.img | tr '\n\t' '  ')"
find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-*' ! -name "rootfs-$key" -exec rm -rf {} +
echo "$out"
