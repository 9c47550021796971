import { randomInt } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { createActor, type Actor } from 'xstate';
import type { SafetySettings } from '../core/settings-document.js';
import { hashSecret, needsRehash, verifySecret } from '../core/auth.js';
import type { EventBus } from '../core/bus.js';
import { GantryError } from '../core/errors.js';
import { isoSeconds } from '../core/format.js';
import type { SafetyReadings } from '../device/types.js';
import type { GantryDb } from '../drizzle/db.js';
import { safetyPins } from '../drizzle/schema.js';
import {
  blockingConstraints,
  constraintView,
  liveOverride,
  SAFETY_CONSTRAINTS,
  safetyInterlockMachine,
  safetyInterlockPersisted,
  type ConstraintChangedEvent,
  type ConstraintState,
  type EnabledConstraints,
  type SafetyConstraint,
  type SafetyContext,
  type SafetyEmitted,
  type SafetyThresholds,
} from '../machines/safety-interlock.js';
import { restoreOptions } from '../machines/persist.js';
import type { MachineEventLog } from '../core/machine-events.js';
import type { ActorSnapshotStore } from './actor-snapshots.js';
import type { GatewayRegistry } from './gateways.js';
import type { LogService } from './logs.js';
import type { SettingsService } from './settings.js';

/**
 * The safety interlock of every hosted gateway: one `safetyInterlockMachine` actor each, fed by the
 * device's safety events and a periodic read (system load changes without events), persisted in
 * `machine_snapshots` (machine "safety") and restored at start. The update pipeline asks it before
 * anything that could disturb a working crane (`assertAllowed`, `blocking`, `onChange`), operators
 * see it on GET /safety and the WebSocket (`safety_update`), and admins override it with a PIN.
 */

export const MAX_PIN_ATTEMPTS = 5;
export const PIN_LOCK_MS = 15 * 60 * 1000;
const DEFAULT_POLL_MS = 3000;
/** hashSecret's format; bounded so a provisioned hash cannot make verification allocate gigabytes. */
const PIN_HASH = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/;
const PIN = /^\d{4,8}$/;

export interface SafetyServiceDeps {
  db: GantryDb;
  /** Where the interlocks' statechart snapshots are kept. */
  actorSnapshots: ActorSnapshotStore;
  bus: EventBus;
  clock: () => number;
  gateways: GatewayRegistry;
  logs: LogService;
  settings: SettingsService;
  /** GANTRY_SAFETY_PIN: the PIN of gateways that have none provisioned yet. */
  defaultPin?: string;
  pollIntervalMs?: number;
  /** Events the interlocks receive and their changes of state, for the development inspector. */
  machineEvents?: MachineEventLog;
}

type InterlockActor = Actor<typeof safetyInterlockMachine>;

interface Interlock {
  gatewayId: string;
  actor: InterlockActor;
  listeners: Set<(blocking: string[]) => void>;
  /** What was last written to the store, so a reading that changes nothing costs no write. */
  persistedKey: string;
  blockingKey: string;
  /** Last status told to the log per constraint (the WebSocket gets every change). */
  loggedStatus: Map<SafetyConstraint, string>;
  /** Bumped by every device event: a periodic read that started before one is stale. */
  eventSeq: number;
  polling: boolean;
  readFailing: boolean;
  unsubscribe: Array<() => void>;
}

function configOf(s: SafetySettings): { enabled: EnabledConstraints; thresholds: SafetyThresholds } {
  return {
    enabled: {
      crane_motion: s.crane_motion,
      acs_collision: s.acs_collision,
      ups_battery: s.ups_battery,
      network: s.network,
      system_load: s.system_load,
    },
    thresholds: { upsMinBatteryPercent: s.ups_min_battery_percent, maxSystemLoad: s.max_system_load },
  };
}

/** "crane_motion (moving)", "ups_battery (22% < 30%)": what an operator needs to know at a glance. */
function describe(c: SafetyConstraint, s: ConstraintState, ctx: SafetyContext): string {
  if (s.status === 'unknown') return `${c} (no sensor reading)`;
  if (c === 'ups_battery') return `${c} (${s.value}% < ${ctx.thresholds.upsMinBatteryPercent}%)`;
  if (c === 'system_load') return `${c} (load ${s.value?.toFixed(2)} > ${ctx.thresholds.maxSystemLoad})`;
  return `${c} (${s.status})`;
}

const LABEL: Record<SafetyConstraint, string> = {
  crane_motion: 'Crane motion',
  acs_collision: 'Anti-collision system',
  ups_battery: 'UPS battery',
  network: 'Network',
  system_load: 'System load',
};

/** One constraint as the interlock sees it now; `status` is the documented word for its state. */
export interface ConstraintStatus {
  enabled: boolean;
  status: string;
  blocking: boolean;
  overridden: boolean;
}

/**
 * The interlock now, in numbers and epoch milliseconds; api/presenters/safety.ts writes the
 * documented GET /safety (`estimated_clear` "MM:SS", `expires_at` ISO seconds).
 */
export interface SafetyStatus {
  constraints: {
    crane_motion: ConstraintStatus & {
      status: 'idle' | 'moving' | 'unknown';
      estimatedClearSeconds: number | null;
    };
    acs_collision: ConstraintStatus & { status: 'clear' | 'warning' | 'collision_risk' | 'unknown' };
    ups_battery: ConstraintStatus & { status: 'ok' | 'low' | 'unknown'; level: number | null };
    network: ConstraintStatus & { status: 'connected' | 'disconnected' | 'unknown' };
    system_load: ConstraintStatus & { status: 'normal' | 'high' | 'unknown'; load: number | null };
  };
  forceOverride: boolean;
  updateAllowed: boolean;
  override: { constraints: SafetyConstraint[]; expiresAt: number; reason: string; enabledBy: string } | null;
  thresholds: { upsMinBatteryPercent: number; maxSystemLoad: number };
}

/** What an override request left in force. */
export interface OverrideResult {
  overrideEnabled: boolean;
  expiresAt: number | null;
  overriddenConstraints: SafetyConstraint[];
  updateAllowed: boolean;
}

/**
 * The documented `{enable, pin, reason, constraints}` as the service takes it (the router's parsed
 * payload): enabling names constraints, a PIN and a reason; disabling needs nothing else.
 */
export type OverrideRequest =
  { enable: true; pin: string; reason: string; constraints: SafetyConstraint[] } | { enable: false };

export class SafetyService {
  private readonly interlocks = new Map<string, Interlock>();
  private readonly pinChecks = new Map<string, Promise<unknown>>();
  private timer: NodeJS.Timeout | null = null;
  private started: Promise<void> | null = null;
  private stopped = false;
  private generatedPins: Record<string, string> = {};

  constructor(private readonly deps: SafetyServiceDeps) {}

  private get clock(): () => number {
    return this.deps.clock;
  }

  // --- lifecycle -------------------------------------------------------------------------------

  /**
   * Restores every gateway's interlock, starts feeding it (device events and a periodic read) and
   * provisions default PINs. Idempotent: returns the same promise on every call. The interlocks
   * themselves exist from the first call to any method, blocking on "unknown" until readings come.
   */
  start(): Promise<void> {
    if (this.started) return this.started;
    this.stopped = false;
    for (const runtime of this.deps.gateways.all()) {
      const il = this.interlock(runtime.id);
      il.unsubscribe.push(
        runtime.device.onEvent((event) => {
          if (event.type !== 'safety') return;
          il.eventSeq++;
          this.feed(il, event.readings);
        }),
      );
    }
    this.timer = setInterval(() => {
      for (const il of this.interlocks.values()) void this.poll(il);
    }, this.deps.pollIntervalMs ?? DEFAULT_POLL_MS);
    this.timer.unref();
    this.started = (async () => {
      await Promise.all([...this.interlocks.values()].map((il) => this.poll(il)));
      await this.provisionDefaultPins();
    })();
    return this.started;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.started?.catch(() => undefined);
    await Promise.allSettled([...this.pinChecks.values()]);
    this.stopped = true;
    for (const il of this.interlocks.values()) {
      il.unsubscribe.forEach((fn) => fn());
      il.actor.stop();
    }
    this.interlocks.clear();
    this.started = null;
  }

  /**
   * PINs generated at this start for gateways that had none (and no GANTRY_SAFETY_PIN), so the
   * caller can print them once. Handed out once, then forgotten: only the hash is kept.
   */
  async takeGeneratedPins(): Promise<Record<string, string>> {
    await this.started;
    const pins = this.generatedPins;
    this.generatedPins = {};
    return pins;
  }

  // --- what the pipeline and recovery call -----------------------------------------------------

  /** What GET /safety reports: the constraints, the running override and the thresholds. */
  async status(gatewayId: string): Promise<SafetyStatus> {
    const il = this.interlock(gatewayId);
    await this.started;
    this.sync(il);
    const ctx = il.actor.getSnapshot().context;
    const now = this.clock();
    const view = constraintView(ctx, now);
    const override = liveOverride(ctx, now);
    const base = (c: SafetyConstraint) => ({
      enabled: view[c].enabled,
      blocking: view[c].blocking,
      overridden: view[c].overridden,
    });
    const crane = view.crane_motion.estimatedClearSeconds;
    return {
      constraints: {
        crane_motion: {
          ...base('crane_motion'),
          status: view.crane_motion.status as 'idle' | 'moving' | 'unknown',
          estimatedClearSeconds: crane,
        },
        acs_collision: {
          ...base('acs_collision'),
          status: view.acs_collision.status as 'clear' | 'warning' | 'collision_risk' | 'unknown',
        },
        ups_battery: {
          ...base('ups_battery'),
          status: view.ups_battery.status as 'ok' | 'low' | 'unknown',
          level: view.ups_battery.value,
        },
        network: {
          ...base('network'),
          status: view.network.status as 'connected' | 'disconnected' | 'unknown',
        },
        system_load: {
          ...base('system_load'),
          status: view.system_load.status as 'normal' | 'high' | 'unknown',
          load: view.system_load.value === null ? null : Math.round(view.system_load.value * 100) / 100,
        },
      },
      forceOverride: override !== null,
      updateAllowed: SAFETY_CONSTRAINTS.every((c) => !view[c].blocking),
      override: override && {
        constraints: override.constraints,
        expiresAt: override.expiresAt,
        reason: override.reason,
        enabledBy: override.by,
      },
      thresholds: {
        upsMinBatteryPercent: ctx.thresholds.upsMinBatteryPercent,
        maxSystemLoad: ctx.thresholds.maxSystemLoad,
      },
    };
  }

  /** Constraints that block right now (enabled, condition met, no live override covering them). */
  blocking(gatewayId: string): string[] {
    const il = this.interlock(gatewayId);
    this.sync(il);
    return blockingConstraints(il.actor.getSnapshot().context, this.clock());
  }

  /** Throws OTA_UPDATE_BLOCKED naming what blocks, unless nothing does. */
  assertAllowed(gatewayId: string, action: string): void {
    const il = this.interlock(gatewayId);
    this.sync(il);
    const ctx = il.actor.getSnapshot().context;
    const now = this.clock();
    const blocking = blockingConstraints(ctx, now);
    if (blocking.length === 0) return;
    const view = constraintView(ctx, now);
    throw new GantryError(
      'OTA_UPDATE_BLOCKED',
      `Update blocked by safety constraints: ${blocking.map((c) => describe(c, view[c], ctx)).join(', ')}`,
      { blocking, action },
    );
  }

  /**
   * Calls `listener` with the blocking list each time it changes (not at once: read `blocking()`
   * first, then wait). Returns the unsubscribe function.
   */
  onChange(gatewayId: string, listener: (blocking: string[]) => void): () => void {
    const il = this.interlock(gatewayId);
    il.listeners.add(listener);
    return () => il.listeners.delete(listener);
  }

  /** An operation finished: an override given for it (or for "the next one") ends. */
  operationCompleted(gatewayId: string, operationId: string): void {
    this.interlock(gatewayId).actor.send({ type: 'OPERATION_COMPLETED', operationId });
  }

  // --- override and PIN ------------------------------------------------------------------------

  async override(
    gatewayId: string,
    input: OverrideRequest,
    user: { username: string },
  ): Promise<OverrideResult> {
    const il = this.interlock(gatewayId);
    await this.started;
    this.sync(il);
    if (input.enable) {
      await this.verifyPin(gatewayId, input.pin);
      // An override given during an operation lasts for that operation; otherwise for the next.
      const operationId = this.deps.gateways.get(gatewayId)?.currentOperation()?.id ?? null;
      il.actor.send({
        type: 'OVERRIDE_ENABLE',
        constraints: input.constraints,
        reason: input.reason,
        by: user.username,
        at: this.clock(),
        operationId,
      });
    } else {
      il.actor.send({ type: 'OVERRIDE_DISABLE', by: user.username, at: this.clock() });
    }
    const now = this.clock();
    const ctx = il.actor.getSnapshot().context;
    const override = liveOverride(ctx, now);
    return {
      overrideEnabled: override !== null,
      expiresAt: override ? override.expiresAt : null,
      overriddenConstraints: override ? override.constraints : [],
      updateAllowed: blockingConstraints(ctx, now).length === 0,
    };
  }

  /**
   * Provisions a gateway's override PIN, as a plain PIN (hashed here) or as a hash in hashSecret's
   * format (the configuration ZIP carries only the hash). The wrong-PIN count starts over; a
   * running lockout is kept (it ends on its own within 15 minutes).
   */
  async setPin(gatewayId: string, input: { pin?: string; hash?: string }): Promise<void> {
    this.interlock(gatewayId);
    if ((input.pin === undefined) === (input.hash === undefined)) {
      throw new GantryError('VALIDATION_ERROR', 'Invalid request: give either pin or hash', {
        fields: [{ field: 'pin', message: 'exactly one of pin and hash' }],
      });
    }
    let pinHash: string;
    if (input.pin !== undefined) {
      if (!PIN.test(input.pin)) {
        throw new GantryError('VALIDATION_ERROR', 'Invalid request: pin: must be 4 to 8 digits', {
          fields: [{ field: 'pin', message: 'must be 4 to 8 digits' }],
        });
      }
      pinHash = await hashSecret(input.pin);
    } else {
      pinHash = input.hash!;
      if (!isUsableHash(pinHash)) {
        throw new GantryError('VALIDATION_ERROR', 'Invalid request: hash: not a usable scrypt PIN hash', {
          fields: [{ field: 'hash', message: 'expected scrypt$N$r$p$salt$hash with sane parameters' }],
        });
      }
    }
    const now = this.clock();
    this.deps.db
      .insert(safetyPins)
      .values({
        gatewayId,
        pinHash,
        source: 'provisioned',
        failedAttempts: 0,
        lockedUntil: null,
        updatedAt: now,
      })
      .onConflictDoUpdate({
        target: safetyPins.gatewayId,
        set: { pinHash, source: 'provisioned', failedAttempts: 0, updatedAt: now },
      })
      .run();
    this.deps.logs.info(gatewayId, 'safety', 'Safety override PIN changed');
  }

  /**
   * Checks a gateway's PIN with the shared 5-strike lockout (overrides and factory reset use the
   * same PIN and count). One check at a time per gateway: parallel guesses must not slip past it.
   */
  verifyPin(gatewayId: string, pin: string): Promise<void> {
    const previous = this.pinChecks.get(gatewayId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.checkPinNow(gatewayId, pin));
    this.pinChecks.set(gatewayId, run);
    return run;
  }

  private async checkPinNow(gatewayId: string, pin: string): Promise<void> {
    const row = this.deps.db.select().from(safetyPins).where(eq(safetyPins.gatewayId, gatewayId)).get();
    if (!row)
      throw new GantryError('OTA_INVALID_PIN', 'No safety override PIN is provisioned for this gateway');
    const now = this.clock();
    if (row.lockedUntil !== null && row.lockedUntil > now) throw lockedError(row.lockedUntil);
    // A lockout that has run out starts a fresh count.
    const failedBefore = row.lockedUntil !== null ? 0 : row.failedAttempts;
    const ok = await verifySecret(pin, row.pinHash);
    const update = (set: { failedAttempts: number; lockedUntil: number | null }) =>
      this.deps.db
        .update(safetyPins)
        .set({ ...set, updatedAt: this.clock() })
        .where(eq(safetyPins.gatewayId, gatewayId))
        .run();
    if (ok) {
      if (failedBefore !== 0 || row.lockedUntil !== null) update({ failedAttempts: 0, lockedUntil: null });
      // A PIN hashed with older parameters (or provisioned as such a hash) is stored anew.
      if (needsRehash(row.pinHash)) {
        const pinHash = await hashSecret(pin);
        this.deps.db
          .update(safetyPins)
          .set({ pinHash, updatedAt: this.clock() })
          .where(eq(safetyPins.gatewayId, gatewayId))
          .run();
      }
      return;
    }
    const failed = failedBefore + 1;
    if (failed >= MAX_PIN_ATTEMPTS) {
      const lockedUntil = this.clock() + PIN_LOCK_MS;
      update({ failedAttempts: failed, lockedUntil });
      this.deps.logs.warn(
        gatewayId,
        'safety',
        `Safety override locked until ${isoSeconds(lockedUntil)} after ${failed} wrong PINs`,
      );
      throw lockedError(lockedUntil);
    }
    update({ failedAttempts: failed, lockedUntil: null });
    const left = MAX_PIN_ATTEMPTS - failed;
    this.deps.logs.warn(gatewayId, 'safety', `Safety override refused: wrong PIN (${left} attempts left)`);
    throw new GantryError(
      'OTA_INVALID_PIN',
      `Invalid PIN: ${left} attempt${left === 1 ? '' : 's'} left before overrides are locked for 15 minutes`,
      { attempts_left: left },
    );
  }

  /** Gateways without a PIN get GANTRY_SAFETY_PIN, else a random 6-digit one (printed once). */
  private async provisionDefaultPins(): Promise<void> {
    for (const gatewayId of this.deps.gateways.ids()) {
      const has = this.deps.db
        .select({ id: safetyPins.gatewayId })
        .from(safetyPins)
        .where(eq(safetyPins.gatewayId, gatewayId))
        .get();
      if (has) continue;
      const fromEnv = this.deps.defaultPin;
      const pin = fromEnv ?? String(randomInt(0, 1_000_000)).padStart(6, '0');
      const pinHash = await hashSecret(pin);
      if (this.stopped) return;
      const inserted = this.deps.db
        .insert(safetyPins)
        .values({
          gatewayId,
          pinHash,
          source: fromEnv ? 'env' : 'generated',
          failedAttempts: 0,
          lockedUntil: null,
          updatedAt: this.clock(),
        })
        .onConflictDoNothing()
        .run();
      // Provisioned meanwhile (setPin): that PIN stands, ours was never valid.
      if (inserted.changes === 1 && !fromEnv) this.generatedPins[gatewayId] = pin;
    }
  }

  // --- the interlock actors --------------------------------------------------------------------

  private interlock(gatewayId: string): Interlock {
    const existing = this.interlocks.get(gatewayId);
    if (existing) return existing;
    if (!this.deps.gateways.get(gatewayId)) {
      throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${gatewayId} not found`);
    }
    // Fail safe during shutdown: nothing may proceed on an interlock that no longer watches.
    if (this.stopped) {
      throw new GantryError('OTA_UPDATE_BLOCKED', 'Update blocked: the safety interlock is not running', {
        blocking: [...SAFETY_CONSTRAINTS],
      });
    }
    const il = this.createInterlock(gatewayId);
    this.interlocks.set(gatewayId, il);
    return il;
  }

  private createInterlock(gatewayId: string): Interlock {
    const now = this.clock();
    const config = configOf(this.deps.settings.get(gatewayId).safety);
    const snapshot = this.loadSnapshot(gatewayId);
    const inspect = this.deps.machineEvents?.inspector(
      gatewayId,
      'safetyInterlock',
      gatewayId,
      (ref: unknown): boolean => ref === actor,
    );
    const actor: InterlockActor = createActor(safetyInterlockMachine, {
      input: { now, ...config },
      inspect,
      ...(snapshot ? { snapshot } : {}),
    });
    const il: Interlock = {
      gatewayId,
      actor,
      listeners: new Set(),
      persistedKey: '',
      blockingKey: '',
      loggedStatus: new Map(),
      eventSeq: 0,
      polling: false,
      readFailing: false,
      unsubscribe: [],
    };
    actor.on('*', (event) => this.onEmitted(il, event));
    const sub = actor.subscribe({
      next: () => this.onSnapshot(il),
      error: (err) => console.error(`[gantry] safety interlock ${gatewayId}:`, err),
    });
    il.unsubscribe.push(() => sub.unsubscribe());
    actor.start();
    const ctx = actor.getSnapshot().context;
    for (const c of SAFETY_CONSTRAINTS) il.loggedStatus.set(c, 'unknown');
    il.blockingKey = blockingConstraints(ctx, now).join(',');
    // The delayed expiry of a restored override is not re-armed by XState: RESUME does it, for
    // the time left (or ends the override at once if it ran out while we were down).
    actor.send({ type: 'RESUME', at: now });
    actor.send({ type: 'CONFIG', ...config });
    this.onSnapshot(il);
    return il;
  }

  private loadSnapshot(gatewayId: string) {
    const stored = this.deps.actorSnapshots.load(safetyInterlockPersisted, gatewayId);
    if (stored.status === 'missing') return undefined;
    if (stored.status === 'refused') {
      // Starting fresh drops an override: the safe direction to fail in.
      this.deps.logs.warn(
        gatewayId,
        'safety',
        `Stored safety interlock state unreadable (${stored.reason}); starting fresh`,
      );
      return undefined;
    }
    // Readings from before a restart say nothing about the crane now: unknown (blocking) until read.
    return restoreOptions({ ...stored.snapshot, context: { ...stored.snapshot.context, readings: null } })
      .snapshot;
  }

  /** Persist what matters across a restart (state, override, config), and tell onChange listeners. */
  private onSnapshot(il: Interlock): void {
    const snapshot = il.actor.getSnapshot();
    const ctx = snapshot.context;
    // Readings and "now" change every few seconds and are re-read after a restart anyway: writing
    // them each time would wear the gateway's flash for nothing.
    const key = JSON.stringify([
      snapshot.value,
      ctx.override,
      ctx.enabled,
      ctx.thresholds,
      blockingConstraints(ctx),
    ]);
    if (key !== il.persistedKey && !this.stopped) {
      il.persistedKey = key;
      this.deps.actorSnapshots.save(
        safetyInterlockPersisted,
        il.gatewayId,
        il.gatewayId,
        il.actor.getPersistedSnapshot(),
      );
    }
    const blocking = blockingConstraints(ctx, this.clock());
    const blockingKey = blocking.join(',');
    if (blockingKey !== il.blockingKey) {
      il.blockingKey = blockingKey;
      for (const listener of [...il.listeners]) {
        try {
          listener([...blocking]);
        } catch (err) {
          console.error(`[gantry] safety onChange listener (${il.gatewayId}):`, err);
        }
      }
    }
  }

  private onEmitted(il: Interlock, event: SafetyEmitted): void {
    const gw = il.gatewayId;
    switch (event.type) {
      case 'constraintChanged':
        this.deps.bus.publish(gw, {
          type: 'safety_update',
          constraint: event.constraint,
          status: event.status,
          blocking: event.blocking,
          estimatedClearSeconds: event.estimatedClearSeconds,
        });
        this.logChange(il, event);
        return;
      case 'overrideStarted': {
        const o = event.override;
        this.deps.logs.warn(
          gw,
          'safety',
          `Safety override enabled by ${o.by} for ${o.constraints.join(', ')} until ${isoSeconds(o.expiresAt)}: ${o.reason}`,
        );
        return;
      }
      case 'overrideEnded': {
        const what = event.override.constraints.join(', ');
        const message =
          event.reason === 'expired'
            ? `Safety override expired (${what})`
            : event.reason === 'disabled'
              ? `Safety override disabled${event.by ? ` by ${event.by}` : ''} (${what})`
              : event.reason === 'operation_completed'
                ? `Safety override ended: operation completed (${what})`
                : `Safety override replaced (${what})`;
        this.deps.logs.info(gw, 'safety', message);
        return;
      }
    }
  }

  /**
   * The activity log gets the changes an operator would look for (a crane started moving, the UPS
   * ran low), not system load, which wanders around its threshold on a busy gateway and would
   * drown the log; nor the first readings after a start that merely confirm all is clear.
   */
  private logChange(il: Interlock, e: ConstraintChangedEvent): void {
    if (e.constraint === 'system_load') return;
    const before = il.loggedStatus.get(e.constraint);
    il.loggedStatus.set(e.constraint, e.status);
    if (before === e.status || (before === 'unknown' && !e.blocking)) return;
    const tail = e.blocking ? ' (blocking updates)' : e.overridden ? ' (overridden)' : '';
    const level = e.blocking ? 'warn' : 'info';
    this.deps.logs.write(il.gatewayId, level, 'safety', `${LABEL[e.constraint]}: ${e.status}${tail}`);
  }

  private feed(il: Interlock, readings: SafetyReadings | null): void {
    if (this.stopped) return;
    il.actor.send({ type: 'READINGS', readings, at: this.clock() });
    this.sync(il);
  }

  private async poll(il: Interlock): Promise<void> {
    if (il.polling || this.stopped) return;
    il.polling = true;
    const seq = il.eventSeq;
    try {
      const device = this.deps.gateways.get(il.gatewayId)?.device;
      if (!device) return;
      let readings: SafetyReadings | null;
      try {
        readings = await device.readSafety();
        if (il.readFailing) this.deps.logs.info(il.gatewayId, 'safety', 'Safety sensors readable again');
        il.readFailing = false;
      } catch (err) {
        readings = null;
        if (!il.readFailing) {
          this.deps.logs.error(
            il.gatewayId,
            'safety',
            `Safety sensors unreadable, blocking updates: ${(err as Error).message}`,
          );
        }
        il.readFailing = true;
      }
      // A device event that arrived while we read is newer than what we read.
      if (seq === il.eventSeq) this.feed(il, readings);
    } finally {
      il.polling = false;
    }
  }

  /**
   * Brings the actor up to date with the settings and the clock: a changed safety configuration
   * takes effect at the next question, and an override past its deadline ends now even if the
   * timer has not fired (a fake clock in tests, a suspended process).
   */
  private sync(il: Interlock): void {
    if (this.stopped) return;
    const ctx = il.actor.getSnapshot().context;
    const config = configOf(this.deps.settings.get(il.gatewayId).safety);
    if (
      JSON.stringify([config.enabled, config.thresholds]) !== JSON.stringify([ctx.enabled, ctx.thresholds])
    ) {
      const changed = SAFETY_CONSTRAINTS.filter((c) => ctx.enabled[c] !== config.enabled[c]);
      for (const c of changed) {
        this.deps.logs.warn(
          il.gatewayId,
          'safety',
          `${LABEL[c]} constraint ${config.enabled[c] ? 'enabled' : 'disabled'} by configuration`,
        );
      }
      il.actor.send({ type: 'CONFIG', ...config });
    }
    const now = this.clock();
    if (ctx.override && ctx.override.expiresAt <= now) il.actor.send({ type: 'RESUME', at: now });
  }
}

function lockedError(lockedUntil: number): GantryError {
  const until = isoSeconds(lockedUntil);
  return new GantryError(
    'OTA_PIN_LOCKED',
    `Safety override locked after ${MAX_PIN_ATTEMPTS} wrong PINs until ${until}`,
    { locked_until: until },
  );
}

/** hashSecret's format with parameters verifySecret can run within Node's default scrypt memory. */
export function isUsableHash(hash: string): boolean {
  const m = PIN_HASH.exec(hash);
  if (!m) return false;
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const powerOfTwo = n > 1 && (n & (n - 1)) === 0;
  return powerOfTwo && r >= 1 && p >= 1 && p <= 16 && 128 * n * r < 32 * 1024 * 1024;
}
