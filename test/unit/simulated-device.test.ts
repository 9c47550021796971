import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { SimulatedDevice } from '../../device/simulated.js';
import type { DeviceEvent } from '../../device/types.js';
import { makeTempDir } from '../helpers/temp.js';

const T0 = Date.parse('2025-03-15T10:00:00Z');
function tempDir(): string {
  return makeTempDir('gantry-device-');
}

function makeDevice(dir = tempDir(), clock = { now: T0 }) {
  return new SimulatedDevice({ gatewayId: 'GW-T1', model: 'Univa-GW-Pro', dir, now: () => clock.now });
}

async function writeAll(stream: Writable, data: Buffer): Promise<void> {
  stream.end(data);
  await finished(stream);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function collectEvents(device: SimulatedDevice): DeviceEvent[] {
  const events: DeviceEvent[] = [];
  device.onEvent((e) => events.push(e));
  return events;
}

describe('SimulatedDevice', () => {
  describe('first start', () => {
    it('should provision both slots with factory images, A booted and committed', async () => {
      const device = makeDevice();
      expect(await device.bootedSlot()).toBe('A');
      expect(await device.readBootEnv()).toEqual({
        bootSlot: 'A',
        upgradeAvailable: false,
        bootCount: 0,
        bootLimit: 3,
      });
      const slots = await device.slots();
      expect(slots.A).toMatchObject({ id: 'A', state: 'bootable', version: 'v5.0.4', kernel: '6.1.33-LTS' });
      expect(slots.B).toMatchObject({ id: 'B', state: 'bootable', version: 'v5.0.3' });
      expect(await device.systemInfo()).toMatchObject({
        model: 'Univa-GW-Pro',
        osVersion: 'v5.0.4',
        kernel: '6.1.33-LTS',
        bootloader: 'U-Boot 2024.01',
      });
    });

    it('should record the real SHA-256 and size of the bytes on each slot', async () => {
      const device = makeDevice();
      const slots = await device.slots();
      for (const id of ['A', 'B'] as const) {
        const bytes = fs.readFileSync(device.slotImagePath(id));
        expect(slots[id].imageBytes).toBe(bytes.length);
        expect(slots[id].sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      }
      expect(slots.A.sha256).not.toBe(slots.B.sha256);
    });

    it('should measure uptime with the injected clock', async () => {
      const clock = { now: T0 };
      const device = makeDevice(tempDir(), clock);
      clock.now += 90 * 60_000;
      expect((await device.systemInfo()).uptimeSeconds).toBe(5400);
    });
  });

  describe('persistence', () => {
    it('should keep its state when re-instantiated on the same dir', async () => {
      const dir = tempDir();
      const first = makeDevice(dir);
      await first.writeBootEnv({ bootSlot: 'B' });
      await first.reboot();
      await first.setFreeBytes(12345);
      await first.setSensors({ craneMotion: 'moving', upsBatteryPercent: 40 });
      await first.setSelfTestFails('A', true);
      await first.close();

      const again = makeDevice(dir);
      expect(await again.bootedSlot()).toBe('B');
      expect((await again.systemInfo()).osVersion).toBe('v5.0.3');
      expect((await again.storageSpace()).freeBytes).toBe(12345);
      expect(await again.readSafety()).toMatchObject({ craneMotion: 'moving', upsBatteryPercent: 40 });
      expect((await again.selfTest('A')).ok).toBe(false);
      expect((await again.selfTest('B')).ok).toBe(true);
    });

    it('should follow a changed configured model on a later start (regression)', async () => {
      const dir = tempDir();
      makeDevice(dir);
      const again = new SimulatedDevice({ gatewayId: 'GW-T1', model: 'Univa-GW-Max', dir, now: () => T0 });
      expect((await again.systemInfo()).model).toBe('Univa-GW-Max');
      expect((await makeDevice(dir).systemInfo()).model).toBe('Univa-GW-Pro');
    });

    it('should not re-provision (and overwrite slot images) on a later start', async () => {
      const dir = tempDir();
      const first = makeDevice(dir);
      const image = randomBytes(4096);
      await writeAll(await first.openSlotWriter('B', { offset: 0 }), image);
      const again = makeDevice(dir);
      expect(fs.readFileSync(again.slotImagePath('B')).equals(image)).toBe(true);
    });
  });

  describe('slot writes', () => {
    it('should refuse to open the booted slot for writing', async () => {
      const device = makeDevice();
      await expect(device.openSlotWriter('A', { offset: 0 })).rejects.toThrow(/booted slot/);
      const before = fs.readFileSync(device.slotImagePath('A'));
      expect(createHash('sha256').update(before).digest('hex')).toBe((await device.slots()).A.sha256);
    });

    it('should open the booted slot only when explicitly allowed (in-place strategy)', async () => {
      const device = makeDevice();
      const data = randomBytes(1000);
      await writeAll(await device.openSlotWriter('A', { offset: 0, allowBooted: true }), data);
      expect(fs.readFileSync(device.slotImagePath('A')).equals(data)).toBe(true);
    });

    it('should write byte-exact, replacing the previous (longer) image entirely', async () => {
      const device = makeDevice();
      const data = randomBytes(3 * 1024 * 1024 + 17);
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), data);
      const back = await readAll(device.openSlotReader('B'));
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);

      const small = randomBytes(10);
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), small);
      expect(fs.readFileSync(device.slotImagePath('B')).equals(small)).toBe(true);
    });

    it('should resume at an offset, keeping the prefix and dropping a torn tail', async () => {
      const device = makeDevice();
      const image = randomBytes(100_000);
      // The first attempt verified 60,000 bytes; 5,000 more reached the file before the crash.
      const torn = Buffer.concat([image.subarray(0, 60_000), Buffer.alloc(5000, 0xee)]);
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), torn);

      await writeAll(await device.openSlotWriter('B', { offset: 60_000 }), image.subarray(60_000));
      const back = fs.readFileSync(device.slotImagePath('B'));
      expect(back.length).toBe(image.length);
      expect(back.equals(image)).toBe(true);
    });

    it('should report the bytes made durable by checkpoint(), from which a write can resume', async () => {
      const device = makeDevice();
      const image = randomBytes(200_000);
      const writer = await device.openSlotWriter('B', { offset: 0 });
      writer.write(image.subarray(0, 120_000));
      expect(await writer.checkpoint()).toBe(120_000);
      // Crash: the stream is torn down without finishing; the rest is written after "reboot".
      writer.destroy();
      await new Promise((resolve) => writer.once('close', resolve));
      await writeAll(await device.openSlotWriter('B', { offset: 120_000 }), image.subarray(120_000));
      expect(fs.readFileSync(device.slotImagePath('B')).equals(image)).toBe(true);
    });

    it('should read an inclusive byte range', async () => {
      const device = makeDevice();
      const data = Buffer.from('0123456789abcdef');
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), data);
      expect((await readAll(device.openSlotReader('B', { start: 4, end: 9 }))).toString()).toBe('456789');
    });

    it('should read at positions through one open slot, short only at its end', async () => {
      const device = makeDevice();
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), Buffer.from('0123456789abcdef'));
      const reader = await device.openSlotReadAt('B');
      try {
        const into = Buffer.alloc(4);
        expect(await reader.read(into, 10)).toBe(4);
        expect(into.toString()).toBe('abcd');
        expect(await reader.read(into, 2)).toBe(4);
        expect(into.toString()).toBe('2345');
        expect(await reader.read(into, 14)).toBe(2);
      } finally {
        await reader.close();
      }
    });

    it('should persist slot records', async () => {
      const dir = tempDir();
      const device = makeDevice(dir);
      await device.writeSlotRecord('B', {
        state: 'invalid',
        version: 'v5.0.5',
        kernel: null,
        sha256: null,
        imageBytes: 0,
        installedAt: null,
      });
      expect((await makeDevice(dir).slots()).B).toMatchObject({ state: 'invalid', version: 'v5.0.5' });
    });
  });

  describe('reboot (U-Boot bootcount/bootlimit)', () => {
    it('should boot the slot named in the boot env and report it', async () => {
      const clock = { now: T0 };
      const device = makeDevice(tempDir(), clock);
      const events = collectEvents(device);
      await device.writeBootEnv({ bootSlot: 'B' });
      clock.now += 60_000;
      await device.reboot();
      expect(await device.bootedSlot()).toBe('B');
      expect((await device.systemInfo()).uptimeSeconds).toBe(0);
      expect(events).toEqual([
        { type: 'booted', slot: 'B', bootEnv: expect.objectContaining({ bootSlot: 'B' }) },
      ]);
    });

    it('should count boots of a slot on trial and fall back after bootLimit failed boots', async () => {
      const device = makeDevice();
      const events = collectEvents(device);
      await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0, bootLimit: 3 });
      await device.failNextBoots('B', 3);
      await device.reboot();
      expect(await device.bootedSlot()).toBe('A');
      expect(await device.readBootEnv()).toEqual({
        bootSlot: 'A',
        upgradeAvailable: false,
        bootCount: 0,
        bootLimit: 3,
      });
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ type: 'booted', slot: 'A' });
    });

    it('should stay on the trial slot when it comes up within bootLimit', async () => {
      const device = makeDevice();
      await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0, bootLimit: 3 });
      await device.failNextBoots('B', 2);
      await device.reboot();
      expect(await device.bootedSlot()).toBe('B');
      // Still on trial: the OTA layer, not the bootloader, commits it.
      expect(await device.readBootEnv()).toMatchObject({
        bootSlot: 'B',
        upgradeAvailable: true,
        bootCount: 3,
      });
    });

    it('should fall back from a trial slot that holds no bootable image', async () => {
      const device = makeDevice();
      await device.writeSlotRecord('B', {
        state: 'invalid',
        version: null,
        kernel: null,
        sha256: null,
        imageBytes: 0,
        installedAt: null,
      });
      await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0 });
      await device.reboot();
      expect(await device.bootedSlot()).toBe('A');
    });

    it('should consume pending boot failures so the slot boots again later', async () => {
      const dir = tempDir();
      const device = makeDevice(dir);
      await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0 });
      await device.failNextBoots('B', 5);
      await device.reboot();
      expect(await device.bootedSlot()).toBe('A');
      // Two failures were left; they survive a restart of the simulator.
      const again = makeDevice(dir);
      await again.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0 });
      await again.reboot();
      expect(await again.bootedSlot()).toBe('B');
      expect((await again.readBootEnv()).bootCount).toBe(3);
    });

    it('should throw when no slot comes up', async () => {
      const device = makeDevice();
      await device.failNextBoots('A', 100);
      await device.failNextBoots('B', 100);
      await expect(device.reboot()).rejects.toThrow(/did not boot/);
    });
  });

  describe('sensors', () => {
    it('should emit a safety event with the merged readings when sensors change', async () => {
      const device = makeDevice();
      const events = collectEvents(device);
      const readings = await device.setSensors({ craneMotion: 'moving', craneEstimatedClearSeconds: 90 });
      expect(readings).toMatchObject({
        craneMotion: 'moving',
        acsCollision: 'clear',
        upsBatteryPercent: 85,
        networkConnected: true,
        craneEstimatedClearSeconds: 90,
      });
      expect(typeof readings.systemLoad).toBe('number');
      expect(events).toEqual([{ type: 'safety', readings }]);

      await device.setSensors({ upsBatteryPercent: 20 });
      expect(events).toHaveLength(2);
      expect(events[1]).toMatchObject({ readings: { craneMotion: 'moving', upsBatteryPercent: 20 } });
    });

    it('should report a fixed system load when one is set, the host’s otherwise', async () => {
      const device = makeDevice();
      expect((await device.setSensors({ systemLoad: 0.95 })).systemLoad).toBe(0.95);
      const host = await device.setSensors({ systemLoad: null });
      expect(host.systemLoad).toBeGreaterThanOrEqual(0);
    });

    it('should stop notifying a listener after it unsubscribes', async () => {
      const device = makeDevice();
      const events: DeviceEvent[] = [];
      const off = device.onEvent((e) => events.push(e));
      off();
      await device.setSensors({ acsCollision: 'warning' });
      expect(events).toEqual([]);
    });
  });

  describe('storage', () => {
    it('should report the data dir’s free space unless overridden', async () => {
      const device = makeDevice();
      const real = await device.storageSpace();
      expect(real.totalBytes).toBeGreaterThan(0);
      expect(real.freeBytes).toBeGreaterThan(0);
      await device.setFreeBytes(1024);
      expect((await device.storageSpace()).freeBytes).toBe(1024);
      await device.setFreeBytes(null);
      expect((await device.storageSpace()).freeBytes).toBeGreaterThan(1024);
    });
  });
});
