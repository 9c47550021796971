import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { buildBundle, streamBundle } from '../../bundle/index.js';
import { fields, keys, MODEL } from './helpers.js';

const MiB = 1024 * 1024;
const PAYLOAD_MIB = 384;
/** What a file or socket read hands over at a time. */
const CHUNK = 64 * 1024;

/** PAYLOAD_MIB of bytes made on the fly: nothing the size of the payload ever exists in memory. */
function generated(): Readable {
  const block = Buffer.alloc(CHUNK);
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff;
  return Readable.from(
    (function* () {
      for (let i = 0; i < (PAYLOAD_MIB * MiB) / CHUNK; i++) {
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i, 0);
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

describe('streamBundle memory', () => {
  it('should keep RSS flat while streaming a payload hundreds of MiB large', async () => {
    const signer = keys();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sample = (): void => {
      peak = Math.max(peak, process.memoryUsage().rss);
    };

    const wire = new PassThrough();
    const building = buildBundle({
      manifestFields: fields(),
      payloadFiles: [{ name: 'rootfs.img', kind: 'rootfs', open: generated }],
      privateKey: signer.privateKey,
      out: wire,
    });
    let written = 0;
    let calls = 0;
    const res = await streamBundle(wire, {
      trustedKeys: [signer.publicKey],
      hardwareModel: MODEL,
      currentVersion: 'v5.0.4',
      allowDowngrade: false,
      openPayloadSink: async () =>
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            written += chunk.length;
            // A slow-ish disk: let the event loop turn so backpressure, not buffering, absorbs it.
            if (++calls % 16 === 0) setImmediate(cb);
            else cb();
          },
        }),
      onProgress: (n) => {
        if (n % (8 * MiB) < 64 * 1024) sample();
      },
    });
    await building;
    sample();

    expect(written).toBe(PAYLOAD_MIB * MiB);
    expect(res.payloads[0]!.size).toBe(PAYLOAD_MIB * MiB);
    expect(peak - baseline).toBeLessThan(100 * MiB);
  });
});
