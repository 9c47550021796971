import path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomicSync } from '../../core/fsutil.js';
import { SLOT_IDS } from '../../core/vocabulary.js';

/**
 * What is installed of each component of a gateway, beside the rootfs slot records: one JSON file
 * (`<gateway>/components/state.json`) replaced atomically on every change. `pending` is what an
 * install in progress wrote and where, so a resumed handler step finds it again; the anti-rollback
 * `floor` rises only when a component is committed.
 */
const slot = z.enum(SLOT_IDS);
export const componentRecordSchema = z.lazy(() =>
  z.object({
    name: z.string(),
    handler: z.string(),
    target: z.string(),
    version: z.string().nullable(),
    floor: z.string().nullable(),
    /** ab-slot: the active slot of the component's class; file: the release directory. */
    slot: slot.nullable(),
    release: z.string().nullable().default(null),
    previous: z
      .object({ version: z.string().nullable(), slot: slot.nullable(), release: z.string().nullable() })
      .nullable(),
    pending: z
      .object({
        jobId: z.string(),
        version: z.string(),
        slot: slot.nullable(),
        release: z.string().nullable(),
        /** Set just before a reboot this component's activation asked for: a resume does not reboot twice. */
        rebootRequested: z.boolean().default(false),
        /**
         * The boot that asked for it (the device's boot id): a resume on the same boot means the reboot
         * never happened (the OS refused or stalled its shutdown, Gantry restarted) and is asked again.
         */
        rebootBootId: z.string().nullable().default(null),
        /** Reboots asked for this activation so far; bounded (REBOOT_ATTEMPTS). */
        rebootAttempts: z.int().nonnegative().default(0),
      })
      .nullable(),
    updatedAt: z.number(),
  }),
);
export type ComponentRecord = z.infer<typeof componentRecordSchema>;
const stateSchema = z.record(z.string(), componentRecordSchema);

export class ComponentStateStore {
  /**
   * Each gateway's records as last read or written, frozen: this store is the only writer of the
   * file, so `GET /status` (which lists the components) need not read, parse and validate it on
   * every request (a gateway without components paid a failed open and its exception each time).
   */
  private readonly cached = new Map<string, Readonly<Record<string, ComponentRecord>>>();

  constructor(private readonly gatewayDir: (gatewayId: string) => string) {}

  dir(gatewayId: string): string {
    return path.join(this.gatewayDir(gatewayId), 'components');
  }

  private file(gatewayId: string): string {
    return path.join(this.dir(gatewayId), 'state.json');
  }

  /** The records by name (a new object each call; the records in it are frozen). */
  all(gatewayId: string): Record<string, ComponentRecord> {
    let records = this.cached.get(gatewayId);
    if (!records) {
      records = freezeRecords(this.read(gatewayId));
      this.cached.set(gatewayId, records);
    }
    return { ...records };
  }

  private read(gatewayId: string): Record<string, ComponentRecord> {
    const raw = readJsonFile<unknown>(this.file(gatewayId));
    if (raw === undefined) return {};
    const parsed = stateSchema.safeParse(raw);
    // A damaged record file must not pass for "nothing installed" silently: a constraint check
    // would then refuse every bundle, which says why; the file is left for inspection.
    if (!parsed.success) throw new Error(`component state ${this.file(gatewayId)} is damaged`);
    return parsed.data;
  }

  get(gatewayId: string, name: string): ComponentRecord | null {
    return this.all(gatewayId)[name] ?? null;
  }

  put(gatewayId: string, record: ComponentRecord): void {
    const next = { ...this.all(gatewayId), [record.name]: record };
    // Forgotten first: if the write throws, the next read goes to the file again.
    this.cached.delete(gatewayId);
    writeFileAtomicSync(this.file(gatewayId), JSON.stringify(next, null, 2));
    // What was written, as a reader would parse it back (defaults filled), and frozen.
    this.cached.set(gatewayId, freezeRecords(stateSchema.parse(next)));
  }
}

function freezeRecords(records: Record<string, ComponentRecord>): Readonly<Record<string, ComponentRecord>> {
  for (const r of Object.values(records)) {
    if (r.previous) Object.freeze(r.previous);
    if (r.pending) Object.freeze(r.pending);
    Object.freeze(r);
  }
  return Object.freeze(records);
}
