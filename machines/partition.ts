/**
 * The A/B slot pair of one gateway, as a pure statechart (one actor per gateway).
 *
 * Contract with the service (names are fixed; fields may be added):
 * - Input `PartitionInput`; context `PartitionContext` = input + `trial`, `lastRollback`, `lastCommit`.
 * - Top-level states: `stable` (running a committed slot, nothing pending), `staged` (next boot is a
 *   freshly installed slot, on trial), `trial` (booted it, awaiting the health check), `rolling_back`
 *   (next boot points back at the previous slot, awaiting the reboot). Writing is context: a slot
 *   with content `writing`.
 * - Events `PartitionEvent`: WRITE_STARTED, WRITE_FAILED, WRITE_VERIFIED, STAGE, BOOTED, HEALTH_OK,
 *   HEALTH_FAILED, ROLLBACK, SETTINGS, INVALIDATE. A refused event leaves the snapshot unchanged;
 *   ask `snapshot.can(event)` first to report the refusal.
 * - Actions to `.provide()` (each runs after the context change, so `context.nextBoot` is the new
 *   target; `params.slot` says the same):
 *     armBootloader({slot})        boot_slot=slot, upgrade_available=1, bootcount=0
 *     commitBootloader({slot})     upgrade_available=0, bootcount=0
 *     rollbackBootloader({slot, cause})  boot_slot=slot, upgrade_available=0, bootcount=0; `cause` is
 *       'rollback' (manual or automatic), 'fallback' (the bootloader already fell back, clear the
 *       trial flags) or 'retarget' (the next-boot slot stopped being bootable)
 * - Emitted: `staged`, `commit`, `rollback`, `reboot_requested` (the service reboots, through the
 *   safety interlock).
 *
 * Invariants (property-tested): `nextBoot` is the booted slot or a bootable one; a seamless write
 * never targets the booted slot; at most one slot is `writing`; `committed` implies the booted slot is
 * bootable; a committed slot is never rolled back by the machine (only ROLLBACK, or a BOOTED report of
 * what the bootloader did, moves away from it); `versionFloor` only rises, and only on HEALTH_OK.
 */
import { and, assign, emit, setup, type SnapshotFrom } from 'xstate';
import { z } from 'zod';
import { otherSlot, type SlotId } from '../device/types.js';
import { persistedMachine, slotIdSchema } from './persist.js';
import { maxVersion } from './version.js';

export type SlotContent = 'empty' | 'invalid' | 'writing' | 'bootable';

export interface PartitionSlot {
  content: SlotContent;
  version: string | null;
}

export interface PartitionInput {
  booted: SlotId;
  nextBoot: SlotId;
  slots: Record<SlotId, PartitionSlot>;
  /** Is the booted slot committed (health-checked, `upgrade_available` clear)? */
  committed: boolean;
  autoRollback: boolean;
  rollbackRetries: number;
  versionFloor: string | null;
  /**
   * The boot env's `upgrade_available`, when known. With `nextBoot !== booted` it tells a staged
   * update (true, the default) from a pending rollback (false).
   */
  upgradeAvailable?: boolean;
  /** Failed trial boots already counted (when starting in `trial`). */
  failedBoots?: number;
}

export interface PartitionTrial {
  /** The slot on trial. */
  slot: SlotId;
  /** Where a rollback goes: always the other slot. */
  previous: SlotId;
  failedBoots: number;
}

export type RollbackInitiator = 'operator' | 'health_check' | 'bootloader';

export interface PartitionRollback {
  from: SlotId;
  to: SlotId;
  reason: string;
  at: number;
  initiatedBy: RollbackInitiator;
}

export interface PartitionCommit {
  slot: SlotId;
  version: string | null;
  at: number;
}

export interface PartitionContext {
  booted: SlotId;
  nextBoot: SlotId;
  slots: Record<SlotId, PartitionSlot>;
  committed: boolean;
  autoRollback: boolean;
  rollbackRetries: number;
  versionFloor: string | null;
  trial: PartitionTrial | null;
  lastRollback: PartitionRollback | null;
  lastCommit: PartitionCommit | null;
}

export type PartitionEvent =
  | { type: 'WRITE_STARTED'; slot: SlotId; inPlace?: boolean }
  | { type: 'WRITE_FAILED'; slot: SlotId }
  | { type: 'WRITE_VERIFIED'; slot: SlotId; version: string }
  | { type: 'STAGE'; slot: SlotId; at: number }
  /**
   * After every boot (and at service start). `upgradeAvailable` (the boot env's, optional) lets a
   * service restart while `staged` be told from a bootloader fallback: with it `true` the staged
   * slot was not tried yet and the report is ignored.
   */
  | { type: 'BOOTED'; slot: SlotId; at: number; bootCount: number; upgradeAvailable?: boolean }
  | { type: 'HEALTH_OK'; at: number }
  | { type: 'HEALTH_FAILED'; at: number; reason: string }
  | { type: 'ROLLBACK'; to: SlotId; at: number; reason: string }
  | { type: 'SETTINGS'; autoRollback?: boolean; rollbackRetries?: number }
  | { type: 'INVALIDATE'; slot: SlotId };

export type PartitionEmitted =
  | { type: 'staged'; slot: SlotId; version: string | null; at: number }
  | { type: 'commit'; slot: SlotId; version: string | null; versionFloor: string | null; at: number }
  | ({ type: 'rollback' } & PartitionRollback)
  | { type: 'reboot_requested'; reason: 'retry' | 'rollback'; bootSlot: SlotId; at: number };

export interface BootloaderParams {
  slot: SlotId;
}
export type RetargetCause = 'rollback' | 'fallback' | 'retarget';
export interface RollbackBootloaderParams {
  slot: SlotId;
  cause: RetargetCause;
}

type Ctx = PartitionContext;

function bootable(ctx: Pick<Ctx, 'slots'>, slot: SlotId): boolean {
  return ctx.slots[slot].content === 'bootable';
}

function anyWriting(ctx: Pick<Ctx, 'slots'>): boolean {
  return ctx.slots.A.content === 'writing' || ctx.slots.B.content === 'writing';
}

/**
 * Where the next boot goes once `slots` changed: it stays unless its slot stopped being bootable,
 * then the booted slot, then the other one (so an in-place write, whose running slot is torn until
 * verified, boots the other image after a power cut), else the booted slot (nothing better exists).
 */
function settledNextBoot(ctx: Pick<Ctx, 'slots' | 'booted' | 'nextBoot'>): SlotId {
  if (bootable(ctx, ctx.nextBoot)) return ctx.nextBoot;
  if (bootable(ctx, ctx.booted)) return ctx.booted;
  const other = otherSlot(ctx.booted);
  return bootable(ctx, other) ? other : ctx.booted;
}

function clampRetries(n: number): number {
  return Number.isFinite(n) ? Math.max(0, Math.floor(n)) : 0;
}

function initialContext(input: PartitionInput): Ctx {
  // No write can be in flight in a machine being created: its writer belonged to a process that is
  // gone, so a slot reported as `writing` is torn.
  const settle = (slot: PartitionSlot): PartitionSlot =>
    slot.content === 'writing' ? { content: 'invalid', version: null } : { ...slot };
  const slots: Record<SlotId, PartitionSlot> = { A: settle(input.slots.A), B: settle(input.slots.B) };
  const { booted } = input;
  let nextBoot = input.nextBoot;
  if (nextBoot !== booted && slots[nextBoot].content !== 'bootable') nextBoot = booted;
  let committed = input.committed && slots[booted].content === 'bootable';
  let trial: PartitionTrial | null = null;
  if (nextBoot !== booted && input.upgradeAvailable !== false) {
    // Staged: the trial flag in the boot env belongs to the staged slot, not the booted one, which
    // was running before the stage and so counts as committed when it holds a bootable image.
    committed = slots[booted].content === 'bootable';
    trial = { slot: nextBoot, previous: booted, failedBoots: 0 };
  } else if (nextBoot === booted && !committed && slots[booted].content === 'bootable') {
    trial = { slot: booted, previous: otherSlot(booted), failedBoots: clampRetries(input.failedBoots ?? 0) };
  }
  return {
    booted,
    nextBoot,
    slots,
    committed,
    autoRollback: input.autoRollback,
    rollbackRetries: clampRetries(input.rollbackRetries),
    versionFloor: input.versionFloor,
    trial,
    lastRollback: null,
    lastCommit: null,
  };
}

/** Context after a bootloader-driven boot of `slot` outside a trial (fallback or unexpected). */
function landedOn(ctx: Ctx, slot: SlotId): Partial<Ctx> {
  return { booted: slot, nextBoot: slot, committed: bootable(ctx, slot), trial: null };
}

const base = setup({
  types: {
    context: {} as PartitionContext,
    events: {} as PartitionEvent,
    input: {} as PartitionInput,
    emitted: {} as PartitionEmitted,
  },
  guards: {
    initStaged: ({ context }) => context.trial !== null && context.trial.slot !== context.booted,
    initTrial: ({ context }) => context.trial !== null && context.trial.slot === context.booted,
    initRollingBack: ({ context }) => context.trial === null && context.nextBoot !== context.booted,

    /**
     * One write at a time; a seamless write never targets the booted slot; and a write never takes
     * away the only bootable slot the next boot could go to.
     */
    canWrite: ({ context, event }) => {
      if (event.type !== 'WRITE_STARTED') return false;
      const { slot } = event;
      if (anyWriting(context)) return false;
      if (slot === context.booted && event.inPlace !== true) return false;
      if (slot === context.nextBoot && slot !== context.booted && !bootable(context, context.booted))
        return false;
      return true;
    },
    isStagedSlot: ({ context, event }) =>
      'slot' in event && context.trial !== null && event.slot === context.trial.slot,
    notBooted: ({ context, event }) => 'slot' in event && event.slot !== context.booted,
    slotWriting: ({ context, event }) => 'slot' in event && context.slots[event.slot].content === 'writing',
    canStage: ({ context, event }) =>
      event.type === 'STAGE' &&
      bootable(context, event.slot) &&
      !anyWriting(context) &&
      // The booted slot can only be staged after it was rewritten in place (no longer committed).
      (event.slot !== context.booted || !context.committed),
    canRollback: ({ context, event }) =>
      event.type === 'ROLLBACK' && event.to !== context.booted && bootable(context, event.to),

    bootedOther: ({ context, event }) => event.type === 'BOOTED' && event.slot !== context.booted,
    /**
     * The staged slot came up. For an in-place stage (staged slot = booted slot) only a counted boot
     * (`bootCount > 0`, set by U-Boot while `upgrade_available`) proves a reboot happened.
     */
    bootedStaged: ({ context, event }) =>
      event.type === 'BOOTED' &&
      context.trial !== null &&
      event.slot === context.trial.slot &&
      (event.slot !== context.booted || event.bootCount > 0),
    stagedFellBack: ({ context, event }) =>
      event.type === 'BOOTED' &&
      context.trial !== null &&
      event.slot !== context.trial.slot &&
      event.upgradeAvailable !== true,
    bootedTrialSlot: ({ context, event }) =>
      event.type === 'BOOTED' && context.trial !== null && event.slot === context.trial.slot,
    bootedPrevious: ({ context, event }) =>
      event.type === 'BOOTED' && context.trial !== null && event.slot === context.trial.previous,
    bootedRollbackTarget: ({ context, event }) => event.type === 'BOOTED' && event.slot === context.nextBoot,

    shouldRollBack: ({ context }) =>
      context.trial !== null &&
      context.autoRollback &&
      context.trial.failedBoots + 1 >= context.rollbackRetries &&
      bootable(context, context.trial.previous),
    shouldRetry: ({ context }) =>
      context.trial !== null &&
      !(context.autoRollback && context.trial.failedBoots + 1 >= context.rollbackRetries),
  },
  actions: {
    armBootloader: (_, _params: BootloaderParams) => {},
    commitBootloader: (_, _params: BootloaderParams) => {},
    rollbackBootloader: (_, _params: RollbackBootloaderParams) => {},
    clearTrial: assign({ trial: null }),
    countFailedBoot: assign(({ context }) => ({
      trial: context.trial && { ...context.trial, failedBoots: context.trial.failedBoots + 1 },
    })),
    startManualRollback: assign(({ context, event }) => {
      if (event.type !== 'ROLLBACK') return {};
      return {
        nextBoot: event.to,
        trial: null,
        lastRollback: {
          from: context.booted,
          to: event.to,
          reason: event.reason,
          at: event.at,
          initiatedBy: 'operator' as const,
        },
      };
    }),
  },
});

/** A slot starts being written or is found bad; the next boot moves off it if it pointed there. */
const setContent = (content: 'writing' | 'invalid') =>
  base.enqueueActions(({ context, event, enqueue }) => {
    if (!('slot' in event)) return;
    const slots = { ...context.slots, [event.slot]: { content, version: null } };
    const nextBoot = settledNextBoot({ slots, booted: context.booted, nextBoot: context.nextBoot });
    enqueue.assign({
      slots,
      nextBoot,
      committed: event.slot === context.booted ? false : context.committed,
    });
    if (nextBoot !== context.nextBoot) {
      enqueue({ type: 'rollbackBootloader', params: { slot: nextBoot, cause: 'retarget' } });
    }
  });

/** The bootloader booted `event.slot` on its own (fallback or switch): accept it and say so. */
const landWithoutTrial = (from: 'booted' | 'staged' | 'trial') =>
  base.enqueueActions(({ context, event, enqueue }) => {
    if (event.type !== 'BOOTED') return;
    const rollback: PartitionRollback = {
      from: from === 'booted' ? context.booted : (context.trial?.slot ?? context.booted),
      to: event.slot,
      reason:
        from !== 'booted'
          ? 'boot failed'
          : event.slot === context.nextBoot
            ? 'fallback boot'
            : 'unexpected boot',
      at: event.at,
      initiatedBy: 'bootloader',
    };
    enqueue.assign({ ...landedOn(context, event.slot), lastRollback: rollback });
    enqueue({ type: 'rollbackBootloader', params: { slot: event.slot, cause: 'fallback' } });
    enqueue.emit({ type: 'rollback', ...rollback });
  });

export const partitionMachine = base
  .extend({
    actions: {
      markWriting: setContent('writing'),
      markInvalid: setContent('invalid'),
      landFromBooted: landWithoutTrial('booted'),
      landFromStaged: landWithoutTrial('staged'),
      landFromTrial: landWithoutTrial('trial'),
      /** Runs after `lastRollback`/`nextBoot` were set: point the bootloader back, tell, ask to reboot. */
      announceRollback: base.enqueueActions(({ context, enqueue }) => {
        const rollback = context.lastRollback;
        if (!rollback) return;
        enqueue({ type: 'rollbackBootloader', params: { slot: rollback.to, cause: 'rollback' } });
        enqueue.emit({ type: 'rollback', ...rollback });
        enqueue.emit({
          type: 'reboot_requested',
          reason: 'rollback',
          bootSlot: rollback.to,
          at: rollback.at,
        });
      }),
    },
  })
  .createMachine({
    id: 'partition',
    context: ({ input }) => initialContext(input),
    initial: 'init',
    on: {
      WRITE_VERIFIED: {
        guard: 'slotWriting',
        actions: assign(({ context, event }) => ({
          slots: { ...context.slots, [event.slot]: { content: 'bootable', version: event.version } },
        })),
      },
      WRITE_FAILED: { guard: 'slotWriting', actions: 'markInvalid' },
      SETTINGS: {
        actions: assign(({ context, event }) => ({
          autoRollback: event.autoRollback ?? context.autoRollback,
          rollbackRetries:
            event.rollbackRetries === undefined
              ? context.rollbackRetries
              : clampRetries(event.rollbackRetries),
        })),
      },
    },
    states: {
      /** Transient: picks the real initial state from the input; never observable. */
      init: {
        always: [
          { guard: 'initStaged', target: 'staged' },
          { guard: 'initTrial', target: 'trial' },
          { guard: 'initRollingBack', target: 'rolling_back' },
          { target: 'stable' },
        ],
      },

      stable: {
        on: {
          WRITE_STARTED: { guard: 'canWrite', actions: 'markWriting' },
          INVALIDATE: { actions: 'markInvalid' },
          STAGE: {
            guard: 'canStage',
            target: 'staged',
            actions: [
              assign(({ event }) => ({
                nextBoot: event.slot,
                trial: { slot: event.slot, previous: otherSlot(event.slot), failedBoots: 0 },
              })),
              { type: 'armBootloader', params: ({ event }) => ({ slot: event.slot }) },
              emit(({ context, event }) => ({
                type: 'staged' as const,
                slot: event.slot,
                version: context.slots[event.slot].version,
                at: event.at,
              })),
            ],
          },
          // The bootloader ran the other slot (a fallback, or someone switched it): accept it.
          // BOOTED of the booted slot changes nothing here, even after an in-place rewrite: it may be
          // a service restart with the old image still running, so a rewrite is only ever tried
          // through STAGE (whose boot U-Boot counts).
          BOOTED: { guard: 'bootedOther', actions: 'landFromBooted' },
          ROLLBACK: {
            guard: 'canRollback',
            target: 'rolling_back',
            actions: ['startManualRollback', 'announceRollback'],
          },
        },
      },

      staged: {
        on: {
          // Overwriting or invalidating the staged slot un-stages it (the next boot goes back).
          WRITE_STARTED: {
            guard: and(['canWrite', 'isStagedSlot']),
            target: 'stable',
            actions: ['markWriting', 'clearTrial'],
          },
          INVALIDATE: [
            {
              guard: 'isStagedSlot',
              target: 'stable',
              actions: ['markInvalid', 'clearTrial'],
            },
            { guard: 'notBooted', actions: 'markInvalid' },
          ],
          BOOTED: [
            {
              guard: 'bootedStaged',
              target: 'trial',
              actions: assign(({ context, event }) => ({
                booted: event.slot,
                nextBoot: event.slot,
                committed: false,
                trial: {
                  slot: event.slot,
                  previous: otherSlot(event.slot),
                  failedBoots: Math.max(context.trial?.failedBoots ?? 0, event.bootCount - 1, 0),
                },
              })),
            },
            {
              guard: 'stagedFellBack',
              target: 'stable',
              actions: 'landFromStaged',
            },
          ],
        },
      },

      trial: {
        on: {
          HEALTH_OK: {
            target: 'stable',
            actions: [
              assign(({ context, event }) => {
                const version = context.slots[context.booted].version;
                return {
                  committed: true,
                  trial: null,
                  nextBoot: context.booted,
                  lastCommit: { slot: context.booted, version, at: event.at },
                  versionFloor: maxVersion(context.versionFloor, version),
                };
              }),
              { type: 'commitBootloader', params: ({ context }) => ({ slot: context.booted }) },
              emit(({ context, event }) => ({
                type: 'commit' as const,
                slot: context.booted,
                version: context.slots[context.booted].version,
                versionFloor: context.versionFloor,
                at: event.at,
              })),
            ],
          },
          HEALTH_FAILED: [
            {
              guard: 'shouldRollBack',
              target: 'rolling_back',
              actions: [
                assign(({ context, event }) => {
                  const previous = otherSlot(context.booted);
                  return {
                    nextBoot: previous,
                    trial: null,
                    lastRollback: {
                      from: context.booted,
                      to: previous,
                      reason: event.reason,
                      at: event.at,
                      initiatedBy: 'health_check' as const,
                    },
                  };
                }),
                'announceRollback',
              ],
            },
            {
              guard: 'shouldRetry',
              actions: [
                'countFailedBoot',
                emit(({ context, event }) => ({
                  type: 'reboot_requested' as const,
                  reason: 'retry' as const,
                  bootSlot: context.nextBoot,
                  at: event.at,
                })),
              ],
            },
            // Retries exhausted but nothing to roll back to: wait for the operator (ROLLBACK/recovery).
            { actions: 'countFailedBoot' },
          ],
          BOOTED: [
            {
              guard: 'bootedTrialSlot',
              actions: assign(({ context, event }) => ({
                trial: context.trial && {
                  ...context.trial,
                  failedBoots: Math.max(context.trial.failedBoots, event.bootCount - 1, 0),
                },
              })),
            },
            {
              guard: 'bootedPrevious',
              target: 'stable',
              actions: 'landFromTrial',
            },
          ],
          ROLLBACK: {
            guard: 'canRollback',
            target: 'rolling_back',
            actions: ['startManualRollback', 'announceRollback'],
          },
          // The fallback slot may be found bad; the running trial slot is not invalidated from here.
          INVALIDATE: { guard: 'notBooted', actions: 'markInvalid' },
        },
      },

      /** The boot env points back at `nextBoot`; waiting for the reboot to land there. */
      rolling_back: {
        on: {
          BOOTED: {
            guard: 'bootedRollbackTarget',
            target: 'stable',
            actions: assign(({ context, event }) => landedOn(context, event.slot)),
          },
        },
      },
    },
  });

export type PartitionMachine = typeof partitionMachine;
export type PartitionSnapshot = SnapshotFrom<typeof partitionMachine>;
export type PartitionStateName = 'stable' | 'staged' | 'trial' | 'rolling_back';

export function partitionStateName(snapshot: Pick<PartitionSnapshot, 'value'>): PartitionStateName {
  // `init` is transient (left within the initial macrostep), so it never shows here.
  return snapshot.value === 'init' ? 'stable' : snapshot.value;
}

const partitionSlotSchema = z.strictObject({
  content: z.enum(['empty', 'invalid', 'writing', 'bootable']),
  version: z.string().nullable(),
});

/**
 * The pair's persisted snapshot (services/actor-snapshots.ts). It drives the bootloader, so one that
 * fails this check is never restored: the manager re-derives the pair from the device instead.
 */
export const partitionPersisted = persistedMachine({
  id: 'partition',
  version: 1,
  // `init` is transient and never persisted.
  value: z.enum(['stable', 'staged', 'trial', 'rolling_back']),
  context: z.strictObject({
    booted: slotIdSchema,
    nextBoot: slotIdSchema,
    slots: z.strictObject({ A: partitionSlotSchema, B: partitionSlotSchema }),
    committed: z.boolean(),
    autoRollback: z.boolean(),
    rollbackRetries: z.int().nonnegative(),
    versionFloor: z.string().nullable(),
    trial: z
      .strictObject({
        slot: slotIdSchema,
        previous: slotIdSchema,
        failedBoots: z.int().nonnegative(),
      })
      .nullable(),
    lastRollback: z
      .strictObject({
        from: slotIdSchema,
        to: slotIdSchema,
        reason: z.string(),
        at: z.number(),
        initiatedBy: z.enum(['operator', 'health_check', 'bootloader']),
      })
      .nullable(),
    lastCommit: z
      .strictObject({ slot: slotIdSchema, version: z.string().nullable(), at: z.number() })
      .nullable(),
  }) satisfies z.ZodType<PartitionContext>,
  check: (s) =>
    s.status === 'active' ? null : `the pair's statechart never stops, but this snapshot is ${s.status}`,
});
