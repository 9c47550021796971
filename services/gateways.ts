import path from 'node:path';
import { eq } from 'drizzle-orm';
import type { GatewayConfig } from '../core/config.js';
import { GantryError } from '../core/errors.js';
import { LinuxDevice } from '../device/linux.js';
import { SimulatedDevice } from '../device/simulated.js';
import type { GatewayDevice } from '../device/types.js';
import type { GantryDb } from '../drizzle/db.js';
import { gateways, type GatewayRow } from '../drizzle/schema.js';

/** What one gateway's mutating operation looks like to the monitor and the lock. */
export interface RunningOperation {
  kind: string;
  id: string;
  startedAt: number;
  /** Short machine-readable name of the current step, e.g. "flashing_partition_b". */
  currentOperation: string;
  progress: number;
}

export class GatewayRuntime {
  private operation: RunningOperation | null = null;

  constructor(
    readonly id: string,
    readonly device: GatewayDevice,
    private readonly db: GantryDb,
  ) {
    this.selectRow = this.db.select().from(gateways).where(eq(gateways.id, this.id)).prepare();
  }

  private readonly selectRow;
  /**
   * The gateway's row as last read, frozen. /status and every gateway-scoped request read it: the
   * query was ~18% of a `GET /status`'s CPU (profile under load). The runtime is the row's one
   * writer once the registry made it (test/unit/store-ownership.test.ts), so the kept row is what
   * the store holds.
   */
  private kept: GatewayRow | undefined;

  row(): GatewayRow {
    if (this.kept) return this.kept;
    const row = this.selectRow.get();
    if (!row) throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${this.id} not found`);
    // Read inside a transaction, the row may be one that is then rolled back.
    if (!this.db.$client.inTransaction) this.kept = Object.freeze(row);
    return row;
  }

  /**
   * When the feed was last asked, written in the caller's transaction (the catalog's refresh). The
   * kept row is dropped, not changed, and row() keeps none it reads inside a transaction: the next
   * read after it takes the row as the transaction left it, committed or rolled back.
   */
  recordUpdateCheck(at: number, tx: Pick<GantryDb, 'update'> = this.db): void {
    this.kept = undefined;
    tx.update(gateways).set({ lastUpdateCheckAt: at }).where(eq(gateways.id, this.id)).run();
  }

  /** When an update was last committed (mark-good) on this gateway. */
  recordOtaCommitted(at: number): void {
    this.kept = undefined;
    this.db.update(gateways).set({ lastOtaAt: at }).where(eq(gateways.id, this.id)).run();
  }

  get timezone(): string {
    return this.row().timezone;
  }

  currentOperation(): RunningOperation | null {
    return this.operation;
  }

  /**
   * One mutating operation per gateway at a time (flashing two things at once, or rebooting while
   * flashing, is how gateways get bricked). Returns a release function.
   */
  beginOperation(
    op: Omit<RunningOperation, 'startedAt' | 'progress' | 'currentOperation'>,
    now: number,
  ): () => void {
    if (this.operation) {
      throw new GantryError(
        'OTA_OPERATION_IN_PROGRESS',
        `Another operation is in progress: ${this.operation.kind} ${this.operation.id}`,
        { operation: this.operation.kind, id: this.operation.id },
      );
    }
    this.operation = { ...op, startedAt: now, currentOperation: op.kind, progress: 0 };
    let released = false;
    return () => {
      // Only this holder's own lock: a later operation with another id is left alone.
      if (!released && this.operation?.id === op.id && this.operation.kind === op.kind) this.operation = null;
      released = true;
    };
  }

  updateOperation(id: string, patch: Partial<Pick<RunningOperation, 'currentOperation' | 'progress'>>): void {
    if (this.operation?.id === id) this.operation = { ...this.operation, ...patch };
  }
}

/** The gateways this server hosts: rows in the store plus one device each, under the data dir. */
export class GatewayRegistry {
  private readonly runtimes = new Map<string, GatewayRuntime>();

  constructor(
    private readonly db: GantryDb,
    private readonly dataDir: string,
    private readonly clock: () => number,
  ) {}

  /** Registers the configured gateways; existing rows keep their history, model/zone follow config. */
  load(configured: GatewayConfig[], deviceKind: 'simulated' | 'linux'): void {
    // The Linux device is the board Gantry runs on: one set of slots, one bootloader.
    if (deviceKind === 'linux' && configured.length !== 1) {
      throw new Error(
        `GANTRY_DEVICE=linux manages the board Gantry runs on, so exactly one gateway can be configured ` +
          `(GANTRY_GATEWAYS has ${configured.length}: ${configured.map((g) => g.id).join(', ')})`,
      );
    }
    for (const gw of configured) {
      this.db
        .insert(gateways)
        .values({ id: gw.id, model: gw.model, timezone: gw.timezone, createdAt: this.clock() })
        .onConflictDoUpdate({ target: gateways.id, set: { model: gw.model, timezone: gw.timezone } })
        .run();
      const dir = path.join(this.gatewayDir(gw.id), 'device');
      let device: GatewayDevice;
      if (deviceKind === 'linux') {
        if (!gw.linux)
          throw new Error(`GANTRY_DEVICE=linux: gateway ${gw.id} has no Linux device configuration`);
        device = new LinuxDevice({ gatewayId: gw.id, model: gw.model, dir, ...gw.linux });
      } else {
        device = new SimulatedDevice({ gatewayId: gw.id, model: gw.model, dir, now: this.clock });
      }
      this.runtimes.set(gw.id, new GatewayRuntime(gw.id, device, this.db));
    }
  }

  gatewayDir(id: string): string {
    return path.join(this.dataDir, 'gateways', id);
  }

  get(id: string): GatewayRuntime | undefined {
    return this.runtimes.get(id);
  }

  ids(): string[] {
    return [...this.runtimes.keys()];
  }

  all(): GatewayRuntime[] {
    return [...this.runtimes.values()];
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((r) => r.device.close()));
  }
}
