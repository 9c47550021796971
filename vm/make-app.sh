#!/usr/bin/env bash
# An application slot image (the VM's stand-in for a crane application partition): a small ext4
# file system made with mkfs.ext4 -d (no loop devices, no mounts) holding the application's
# version as a marker file, /app-version. The guest mounts the slot U-Boot's app_slot names
# read-only at /opt/app (gantry-vm-app.service).
#
# usage: make-app.sh OUT_IMAGE VERSION
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need mkfs.ext4

out=$1 version=$2
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "app version must look like v1.0.0, not $version"
APP_MIB=${GANTRY_VM_APP_IMAGE_MIB:-8}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
echo "$version" >"$tree/app-version"
printf 'Gantry VM test application %s: stands in for the crane application.\n' "$version" >"$tree/README"
rm -f "$out"
mkfs.ext4 -q -F -L "app-$version" -m 0 -d "$tree" "$out" "${APP_MIB}M"
echo "$out"
