import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../bundle/keys.js';
import { GantryError } from '../../core/errors.js';
import { SimulatedDevice } from '../../device/simulated.js';
import { createHealthCheck, createUpdatePorts } from '../../server/update-ports.js';
import type { UpdatePorts } from '../../services/updates/job-types.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The ports the update pipeline asks before it touches a gateway, built on the real services of a
 * running Gantry (issue 12.5: they are required, so no missing port can mean "allowed").
 */
describe('update ports on the real services', () => {
  let g: TestGantry;
  let ports: UpdatePorts;

  beforeAll(async () => {
    g = await startTestGantry();
    ports = createUpdatePorts(g.deps);
  });
  afterAll(async () => {
    await g?.stop();
  });

  function simulator(): SimulatedDevice {
    const device = g.deps.gateways.get(GATEWAY)!.device;
    if (!(device instanceof SimulatedDevice)) throw new Error('the test gateway is simulated');
    return device;
  }

  function refusal(fn: () => void): GantryError {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(GantryError);
      return err as GantryError;
    }
    throw new Error('expected a refusal');
  }

  it('should refuse an install while the safety interlock blocks and allow it once clear', async () => {
    expect(() => ports.assertSafe(GATEWAY, 'install')).not.toThrow();
    await simulator().setSensors({ craneMotion: 'moving' });
    await waitFor(
      () => ports.blocking(GATEWAY),
      (b) => b.includes('crane_motion'),
      'the crane blocks',
    );
    const err = refusal(() => ports.assertSafe(GATEWAY, 'install'));
    expect(err.gantryCode).toBe('OTA_UPDATE_BLOCKED');
    expect(err.details).toMatchObject({ blocking: ['crane_motion'], action: 'install' });

    const changes: string[][] = [];
    const stop = ports.onSafetyChange(GATEWAY, (blocking) => changes.push(blocking));
    await simulator().setSensors({ craneMotion: 'idle' });
    await waitFor(
      () => changes,
      (c) => c.some((b) => b.length === 0),
      'told that nothing blocks',
    );
    stop();
    expect(() => ports.assertSafe(GATEWAY, 'install')).not.toThrow();
  });

  it('should trust the keys of <dataDir>/trusted-keys through the provisioning port', () => {
    const pair = generateKeyPair();
    const dir = path.join(g.dataDir, 'trusted-keys');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'vendor.pem'), pair.publicKeyPem);
    const der = (k: KeyObject) => k.export({ type: 'spki', format: 'der' }).toString('hex');
    expect(ports.trustedKeys(GATEWAY).map(der)).toContain(der(pair.publicKey));
  });

  it('should fail the health check of a slot whose simulated self-test fails, and pass it once cleared', async () => {
    const healthCheck = createHealthCheck(g.deps);
    const gw = g.deps.gateways.get(GATEWAY)!;
    expect(await healthCheck(gw, 'B')).toEqual({ ok: true, reason: null });
    await simulator().setSelfTestFails('B', true);
    try {
      expect(await healthCheck(gw, 'B')).toEqual({ ok: false, reason: expect.stringMatching(/slot B/) });
      expect((await healthCheck(gw, 'A')).ok).toBe(true);
    } finally {
      await simulator().setSelfTestFails('B', false);
    }
    expect((await healthCheck(gw, 'B')).ok).toBe(true);
  });
});
