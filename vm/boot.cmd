# Gantry VM: U-Boot A/B boot script (compiled with `mkimage -T script` into boot.scr on the FAT
# partition, found by the distro boot scan). The environment lives in uboot.env on the same FAT
# partition: the file the guest's fw_printenv/fw_setenv use (/etc/fw_env.config).
#
# Contract (README "Linux device"): boot_slot=A|B, upgrade_available=1 while on trial, bootcount
# counted here while on trial, and once bootcount > bootlimit the other slot is booted with
# upgrade_available=0 bootcount=0 (what altbootcmd does on a board with CONFIG_BOOTCOUNT_LIMIT).
# These qemu-x86 U-Boot builds have neither setexpr nor bootcount: the count is an if/elif chain.
#
# app_slot=A|B is the active slot of the `app` component class (Gantry's ab-slot handler switches
# it, GANTRY_LINUX_COMPONENT_SLOTS): passed on as gantry.app= for the guest to mount, and kept when
# the environment is written back here (env export writes only the variables it names: every
# variable of the contract is listed there).
setenv envaddr 0x6000000
if fatload virtio 0:1 ${envaddr} uboot.env; then
  env import -c ${envaddr} 0x4000
else
  echo "gantry-vm: no readable uboot.env: booting slot A"
fi
if test "${boot_slot}" != "B"; then setenv boot_slot A; fi
if test -z "${bootlimit}"; then setenv bootlimit 3; fi
if test "${app_slot}" != "B"; then setenv app_slot A; fi
if test "${upgrade_available}" = "1"; then
  if test -z "${bootcount}"; then setenv bootcount 1
  elif test "${bootcount}" = "0"; then setenv bootcount 1
  elif test "${bootcount}" = "1"; then setenv bootcount 2
  elif test "${bootcount}" = "2"; then setenv bootcount 3
  elif test "${bootcount}" = "3"; then setenv bootcount 4
  elif test "${bootcount}" = "4"; then setenv bootcount 5
  elif test "${bootcount}" = "5"; then setenv bootcount 6
  elif test "${bootcount}" = "6"; then setenv bootcount 7
  elif test "${bootcount}" = "7"; then setenv bootcount 8
  elif test "${bootcount}" = "8"; then setenv bootcount 9
  else setenv bootcount 10
  fi
  echo "gantry-vm: slot ${boot_slot} on trial, boot ${bootcount} of ${bootlimit}"
  if test ${bootcount} -gt ${bootlimit}; then
    echo "gantry-vm: slot ${boot_slot} failed ${bootlimit} boots: falling back"
    if test "${boot_slot}" = "A"; then setenv boot_slot B; else setenv boot_slot A; fi
    setenv upgrade_available 0
    setenv bootcount 0
  fi
  env export -c -s 0x4000 ${envaddr} boot_slot upgrade_available bootcount bootlimit app_slot
  fatwrite virtio 0:1 ${envaddr} uboot.env 0x4000
fi
if test "${boot_slot}" = "B"; then setenv rootpart 3; else setenv rootpart 2; fi
echo "gantry-vm: booting slot ${boot_slot} (virtio 0:${rootpart}), app slot ${app_slot}"
setenv bootargs "console=ttyS0,115200 root=/dev/vda${rootpart} rw rootwait gantry.slot=${boot_slot} gantry.app=${app_slot} panic=5 loglevel=4 systemd.show_status=1"
if ext4load virtio 0:${rootpart} ${kernel_addr_r} /boot/vmlinuz; then
  if ext4load virtio 0:${rootpart} 0x10000000 /boot/initrd.img; then
    zboot ${kernel_addr_r} 0 0x10000000 ${filesize}
  fi
fi
# No kernel on the slot, or it did not start: a failed boot, counted on the next one.
echo "gantry-vm: slot ${boot_slot} did not boot: resetting"
reset
