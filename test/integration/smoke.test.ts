import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';

describe('Gantry server smoke', () => {
  let g: TestGantry;
  beforeAll(async () => {
    g = await startTestGantry();
  });
  afterAll(() => g.stop());

  it('should serve /status for a logged-in admin with the documented envelope', async () => {
    const token = await g.login();
    const res = await g.request('GET', '/api/v1/ota/status', { token });
    expect(res.status).toBe(200);
    expect(res.body.success).toBe(true);
    expect(res.body.message).toBe('Gateway status retrieved successfully');
    expect(res.body.data.gateway.model).toBe('Univa-GW-Pro');
    expect(res.body.data.partitions.active).toMatchObject({
      id: 'A',
      version: 'v5.0.4',
      booted: true,
      status: 'healthy',
    });
    expect(res.body.data.partitions.inactive).toMatchObject({ id: 'B', version: 'v5.0.3', status: 'ready' });
  });
});
