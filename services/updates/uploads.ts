import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { and, desc, eq } from 'drizzle-orm';
import type { HashedUploadInput } from '../../api/schemas/updates.js';
import type { Manifest } from '../../bundle/manifest.js';
import { checkInstallable, verifyBundle } from '../../bundle/stream.js';
import { GantryError } from '../../core/errors.js';
import { formatBytes } from '../../core/format.js';
import type { GantryDb } from '../../drizzle/db.js';
import { jobs as jobsTable } from '../../drizzle/schema.js';
import type { GatewayRegistry, GatewayRuntime } from '../gateways.js';
import type { JobStore } from '../jobs.js';
import type { LogService } from '../logs.js';

/** A manual upload that verified: kept as `<gateway>/uploads/<sha256>.bundle`. */
export interface VerifiedUpload {
  path: string;
  name: string;
  size: number;
  sha256: string;
  manifest: Manifest;
  label: string;
}

export interface UploadStoreDeps {
  db: GantryDb;
  jobs: JobStore;
  logs: LogService;
  gateways: GatewayRegistry;
  clock: () => number;
}

/**
 * SECTION 3's manual uploads: a file the REST layer streamed (and hashed) into the gateway's
 * `uploads/incoming`, verified as a signed bundle, kept for deployment and recorded as a
 * completed `upload` job (its artifact names the file), so a deploy can find it by name + checksum.
 */
export class UploadStore {
  constructor(private readonly deps: UploadStoreDeps) {}

  dir(gw: GatewayRuntime): string {
    return path.join(this.deps.gateways.gatewayDir(gw.id), 'uploads');
  }

  async verify(gw: GatewayRuntime, input: HashedUploadInput, trustedKeys: KeyObject[]) {
    const file = path.resolve(input.path);
    // The path comes from our own upload handler; refuse anything else (a client may call tRPC directly).
    if (
      path.dirname(file) !== path.join(this.dir(gw), 'incoming') ||
      !file.endsWith('.part') ||
      !fs.existsSync(file)
    ) {
      throw new GantryError('VALIDATION_ERROR', 'Invalid request: path: not an upload of this gateway');
    }
    try {
      const { manifest } = await verifyBundle(fs.createReadStream(file, { highWaterMark: 1024 * 1024 }), {
        trustedKeys,
      });
      let hardware: 'compatible' | 'incompatible' = 'compatible';
      try {
        checkInstallable(manifest, { hardwareModel: gw.row().model, currentVersion: null });
      } catch {
        hardware = 'incompatible';
      }
      const stored = path.join(this.dir(gw), `${input.sha256}.bundle`);
      fs.renameSync(file, stored);
      const label = input.version ?? manifest.version;
      const upload: VerifiedUpload = {
        path: stored,
        name: input.originalName,
        size: input.size,
        sha256: input.sha256,
        manifest,
        label,
      };
      this.deps.jobs.create({
        id: `UPLOAD-${input.sha256.slice(0, 12)}-${this.deps.clock()}`,
        gatewayId: gw.id,
        kind: 'upload',
        state: 'complete',
        request: { name: input.originalName, version: input.version ?? null },
        snapshot: null,
        artifact: upload,
      });
      this.deps.logs.info(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} (${manifest.version}) verified`,
      );
      return {
        verified: true as const,
        file: {
          name: input.originalName,
          size: formatBytes(input.size),
          checksum: `sha256:${input.sha256}`,
          version: label,
        },
        metadata: { kernel: manifest.kernel, signature: 'verified' as const },
        compatibility: { hardware },
      };
    } catch (err) {
      fs.rmSync(file, { force: true });
      this.deps.logs.warn(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} refused: ${(err as Error).message}`,
      );
      throw err;
    }
  }

  /** The newest verified upload with this name and checksum ("sha256:…" or bare hex). */
  find(gw: GatewayRuntime, filename: string, checksum: string): VerifiedUpload {
    const sha256 = checksum.toLowerCase().replace(/^sha256:/, '');
    const upload = this.deps.db
      .select()
      .from(jobsTable)
      .where(and(eq(jobsTable.gatewayId, gw.id), eq(jobsTable.kind, 'upload')))
      .orderBy(desc(jobsTable.createdAt))
      .all()
      .map((r) => r.artifact as VerifiedUpload | null)
      .find((a) => a?.name === filename && a.sha256 === sha256);
    if (!upload || !fs.existsSync(upload.path)) {
      throw new GantryError(
        'NOT_FOUND',
        `No verified upload ${filename} with checksum sha256:${sha256}; verify it first`,
      );
    }
    return upload;
  }
}
