import { GantryError } from '../../core/errors.js';
import { SimulatedDevice } from '../../device/simulated.js';
import type { GatewayRuntime } from '../../services/gateways.js';
import {
  simulatorBootFailuresInputSchema,
  simulatorBootFailuresOutputSchema,
  simulatorIgnoredRebootsInputSchema,
  simulatorIgnoredRebootsOutputSchema,
  simulatorRebootInputSchema,
  simulatorRebootOutputSchema,
  simulatorSelfTestInputSchema,
  simulatorSelfTestOutputSchema,
  simulatorSensorsInputSchema,
  simulatorSensorsOutputSchema,
  simulatorSlotWriteInputSchema,
  simulatorSlotWriteOutputSchema,
} from '../schemas/safety.js';
import { envelope } from '../meta.js';
import { adminProcedure, router } from '../trpc.js';

/**
 * Controls of the simulated gateway (move the crane, drain the UPS, fail the next boots or the
 * self-test of a slot, power cycle), for tests and browser demos. Admin only, and only where the device is simulated: on a
 * real gateway these answer 404, as if they did not exist.
 */
function simulated(gateway: GatewayRuntime): SimulatedDevice {
  if (!(gateway.device instanceof SimulatedDevice)) {
    throw new GantryError('NOT_FOUND', `Gateway ${gateway.id} is not simulated: no simulator controls`);
  }
  return gateway.device;
}

export const simulatorRouter = router({
  sensors: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/sensors',
        tag: 'Simulator (development)',
        summary: 'Set simulated safety sensors (any subset); system_load null returns to the host load',
        reply: envelope('Simulated sensors updated'),
      },
    })
    .input(simulatorSensorsInputSchema)
    .output(simulatorSensorsOutputSchema)
    .mutation(async ({ ctx, input }) => {
      const device = simulated(ctx.gateway);
      const r = await device.setSensors({
        ...(input.crane_motion !== undefined ? { craneMotion: input.crane_motion } : {}),
        ...(input.acs_collision !== undefined ? { acsCollision: input.acs_collision } : {}),
        ...(input.ups_battery !== undefined ? { upsBatteryPercent: input.ups_battery } : {}),
        ...(input.network_connected !== undefined ? { networkConnected: input.network_connected } : {}),
        ...(input.system_load !== undefined ? { systemLoad: input.system_load } : {}),
        ...(input.crane_estimated_clear_seconds !== undefined
          ? { craneEstimatedClearSeconds: input.crane_estimated_clear_seconds }
          : {}),
      });
      return {
        crane_motion: r.craneMotion,
        acs_collision: r.acsCollision,
        ups_battery: r.upsBatteryPercent,
        network_connected: r.networkConnected,
        system_load: r.systemLoad,
        crane_estimated_clear_seconds: r.craneEstimatedClearSeconds,
      };
    }),

  bootFailures: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/boot-failures',
        tag: 'Simulator (development)',
        summary: 'Make the next boots of a slot fail (kernel panic / watchdog)',
        reply: envelope('Simulated boot failures set'),
      },
    })
    .input(simulatorBootFailuresInputSchema)
    .output(simulatorBootFailuresOutputSchema)
    .mutation(async ({ ctx, input }) => {
      await simulated(ctx.gateway).failNextBoots(input.slot, input.count);
      ctx.deps.logs.info(
        ctx.gateway.id,
        'simulator',
        `Simulator: next ${input.count} boot(s) of slot ${input.slot} will fail`,
      );
      return { slot: input.slot, count: input.count };
    }),

  /** The next reboot requests are accepted but the gateway stays up (its shutdown stalled). */
  ignoredReboots: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/ignored-reboots',
        tag: 'Simulator (development)',
        summary: 'Make the next reboot requests return without the gateway going down',
        reply: envelope('Simulated ignored reboots set'),
      },
    })
    .input(simulatorIgnoredRebootsInputSchema)
    .output(simulatorIgnoredRebootsOutputSchema)
    .mutation(async ({ ctx, input }) => {
      await simulated(ctx.gateway).ignoreNextReboots(input.count);
      ctx.deps.logs.info(
        ctx.gateway.id,
        'simulator',
        `Simulator: the next ${input.count} reboot request(s) will not bring the gateway down`,
      );
      return { count: input.count };
    }),

  /** The image on a slot boots but is broken: the health check after each trial boot fails. */
  selfTest: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/self-test',
        tag: 'Simulator (development)',
        summary: "Make a slot's self-test (the health check after a trial boot) fail, or pass again",
        reply: envelope('Simulated self-test set'),
      },
    })
    .input(simulatorSelfTestInputSchema)
    .output(simulatorSelfTestOutputSchema)
    .mutation(async ({ ctx, input }) => {
      await simulated(ctx.gateway).setSelfTestFails(input.slot, input.fails);
      ctx.deps.logs.info(
        ctx.gateway.id,
        'simulator',
        input.fails
          ? `Simulator: the self-test of slot ${input.slot} will fail`
          : `Simulator: the self-test of slot ${input.slot} passes again`,
      );
      return { slot: input.slot, fails: input.fails };
    }),

  /**
   * The running system writes its root (a mount's superblock and journal, /etc, /var): the slot's
   * bytes change while its record still names the image installed there.
   */
  slotWrite: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/slot-writes',
        tag: 'Simulator (development)',
        summary: "Write bytes into a slot's image as the running system would (its record unchanged)",
        reply: envelope('Simulated slot write done'),
      },
    })
    .input(simulatorSlotWriteInputSchema)
    .output(simulatorSlotWriteOutputSchema)
    .mutation(async ({ ctx, input }) => {
      const data = Buffer.from(input.data, 'base64');
      await simulated(ctx.gateway).liveWrite(input.slot, input.offset, data);
      ctx.deps.logs.info(
        ctx.gateway.id,
        'simulator',
        `Simulator: ${data.length} bytes written at ${input.offset} of slot ${input.slot} by the running system`,
      );
      return { slot: input.slot, offset: input.offset, bytes: data.length };
    }),

  /** A power cycle: the simulated bootloader runs (bootcount, fallback) and the device reports it. */
  reboot: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/dev/simulator/reboot',
        tag: 'Simulator (development)',
        summary: 'Power-cycle the simulated gateway',
        reply: envelope('Simulated gateway rebooted'),
      },
    })
    .input(simulatorRebootInputSchema)
    .output(simulatorRebootOutputSchema)
    .mutation(async ({ ctx }) => {
      const device = simulated(ctx.gateway);
      ctx.deps.logs.info(ctx.gateway.id, 'simulator', `Simulator: power cycle by ${ctx.user.username}`);
      await device.reboot();
      const env = await device.readBootEnv();
      return {
        booted_slot: await device.bootedSlot(),
        boot_count: env.bootCount,
        upgrade_available: env.upgradeAvailable,
      };
    }),
});
