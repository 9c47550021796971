import { z } from 'zod';
import { LOG_LEVELS } from '../../core/vocabulary.js';
import { PARTITION_STATUSES, SLOT_IDS } from '../../core/vocabulary.js';

export const statusOutputSchema = z.lazy(() => {
  // One instance for both slots, built with the rest of the status.
  const partition = z.object({
    id: z.enum(SLOT_IDS),
    version: z.string().nullable(),
    status: z.enum(PARTITION_STATUSES),
    size: z.string(),
    used: z.string(),
    booted: z.boolean(),
    next_boot: z.boolean(),
  });
  return z.object({
    gateway: z.object({
      model: z.string(),
      os_version: z.string(),
      kernel: z.string(),
      uptime: z.string(),
      bootloader: z.string(),
      last_ota: z.string().nullable(),
    }),
    partitions: z.object({
      active: partition,
      inactive: partition,
      auto_rollback: z.boolean(),
      rollback_retries: z.int(),
    }),
    /**
     * Gantry's addition (issue 15): every component installed, rootfs first (its version is the
     * running slot's), with its handler, target, active slot, anti-rollback floor and any version
     * being installed now.
     */
    components: z
      .array(
        z.object({
          name: z.string(),
          version: z.string().nullable(),
          handler: z.string(),
          target: z.string(),
          slot: z.string().nullable(),
          floor: z.string().nullable(),
          pending_version: z.string().nullable(),
        }),
      )
      .optional(),
  });
});
export type StatusOutput = z.infer<typeof statusOutputSchema>;

export const logsInputSchema = z.lazy(() =>
  z.strictObject({
    limit: z.coerce.number().int().min(1).max(500).default(50),
    level: z.enum(LOG_LEVELS).optional(),
  }),
);

export const logsOutputSchema = z.lazy(() =>
  z.object({
    logs: z.array(
      z.object({ timestamp: z.string(), level: z.enum(LOG_LEVELS), source: z.string(), message: z.string() }),
    ),
    total: z.int(),
  }),
);

export const monitorOutputSchema = z.lazy(() =>
  z.object({
    system_status: z.string(),
    current_operation: z.string(),
    last_update_check: z.string().nullable(),
    next_check: z.string().nullable(),
    resources: z.object({ cpu_usage: z.number(), memory_usage: z.string() }),
  }),
);
