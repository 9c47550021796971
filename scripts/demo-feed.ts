/**
 * A demo update feed for trying Gantry by hand: a vendor signing key, two signed bundles and a TUF
 * repository, served on loopback. Prints the environment to start Gantry against it.
 *
 *   npm run demo:feed              # then, in another terminal, the printed `... npm start`
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { buildBundle } from '../bundle/build.js';
import { generateKeyPair, parsePrivateKey } from '../bundle/keys.js';
import { addTarget, initRepository } from '../feed/repository.js';

const port = Number(process.env.DEMO_FEED_PORT ?? 8090);
const dataDir = path.resolve(process.env.GANTRY_DATA_DIR ?? './data');
const dir = path.join(dataDir, 'demo-feed');
const repo = path.join(dir, 'repo');

async function build(): Promise<void> {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(repo, { recursive: true });
  const tufKey = parsePrivateKey(generateKeyPair().privateKeyPem);
  const vendor = generateKeyPair();
  initRepository(repo, { keys: tufKey, expiresDays: 30 });
  const releases = [
    {
      version: 'v5.0.5',
      type: 'security',
      severity: 'critical',
      changelog: ['Fixed CVE-2025-1234', 'Fixed CVE-2025-5678'],
    },
    { version: 'v5.1.0', type: 'feature', severity: 'medium', changelog: ['New crane telemetry exporter'] },
  ] as const;
  for (const r of releases) {
    const image = path.join(dir, `rootfs-${r.version}.img`);
    fs.writeFileSync(image, randomBytes(8 * 1024 * 1024));
    const out = path.join(dir, `gantry-${r.version}.bundle`);
    await buildBundle({
      manifestFields: {
        version: r.version,
        type: r.type,
        severity: r.severity,
        compatible: ['Univa-GW-Pro'],
        kernel: '6.1.40-LTS',
        released: new Date().toISOString().slice(0, 10),
        description: `Demo release ${r.version}`,
        changelog: [...r.changelog],
      },
      payloadFiles: [{ kind: 'rootfs', path: image, name: 'rootfs.img' }],
      privateKey: parsePrivateKey(vendor.privateKeyPem),
      out,
    });
    await addTarget(repo, out, { keys: tufKey, expiresDays: 30 });
  }
  // Gantry trusts bundle-signing keys found here when no configuration ZIP provides them.
  fs.mkdirSync(path.join(dataDir, 'trusted-keys'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'trusted-keys', 'demo-vendor.pem'), vendor.publicKeyPem);
}

function serve(): void {
  http
    .createServer((req, res) => {
      const file = path.join(
        repo,
        path.normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)),
      );
      if (!file.startsWith(repo) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      const size = fs.statSync(file).size;
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Number(range[2]) : size - 1;
        res.writeHead(206, {
          'content-length': end - start + 1,
          'content-range': `bytes ${start}-${end}/${size}`,
        });
        fs.createReadStream(file, { start, end }).pipe(res);
        return;
      }
      res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
      fs.createReadStream(file).pipe(res);
    })
    .listen(port, '127.0.0.1', () => {
      console.log(
        `Demo feed on http://127.0.0.1:${port} (v5.0.5 security, v5.1.0 feature). Start Gantry with:`,
      );
      console.log(
        `  GANTRY_DATA_DIR=${dataDir} GANTRY_FEED_URL=http://127.0.0.1:${port} GANTRY_FEED_ROOT=${path.join(repo, 'root.json')} npm start`,
      );
    });
}

await build();
serve();
