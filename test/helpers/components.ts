import type { Component } from '../../bundle/manifest.js';

/** A multi-component bundle's base: the root file system, first, always activated by a reboot. */
export function rootfsComponent(version: string): Component {
  return {
    name: 'rootfs',
    version,
    handler: 'ab-slot',
    target: 'rootfs',
    payloads: ['rootfs.img'],
    order: 1,
    needs_reboot: true,
    requires: [],
  };
}

/** An application partition pair (`ab-slot` of class `app`) that needs the rootfs of `rootfsVersion` or later. */
export function appComponent(
  version: string,
  opts: { rootfsVersion: string; order: number; needsReboot: boolean },
): Component {
  return {
    name: 'app',
    version,
    handler: 'ab-slot',
    target: 'app',
    payloads: ['app.img'],
    order: opts.order,
    needs_reboot: opts.needsReboot,
    requires: [{ component: 'rootfs', min_version: opts.rootfsVersion }],
  };
}
