import { z } from 'zod';
import {
  factoryInputSchema,
  factoryOutputSchema,
  recoveryUploadOutputSchema,
  restoreInputSchema,
  restoreOutputSchema,
  rollbackInputSchema,
  rollbackOutputSchema,
} from '../../api/schemas/recovery.js';
import type { GantryDeps } from '../../server/deps.js';
import { defineRoute } from '../route.js';
import { incomingFileReceiver, uploadHandlers } from './upload.js';

const recoveryUploadFormSchema = z.object({
  file: z
    .string()
    .meta({ format: 'binary', description: 'Signed Gantry bundle to keep as the recovery image' }),
});

/** SECTION 5 routes. */
export function recoveryRoutes(deps: GantryDeps) {
  const [authorize, receive] = uploadHandlers(
    deps,
    (caller) => caller.recovery.authorizeUpload(),
    (gatewayId) => incomingFileReceiver(deps, gatewayId),
  );
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/ota/recovery/rollback',
      tag: 'Recovery',
      summary: 'Point the next boot at the other slot (it must hold a verified image)',
      role: 'admin',
      input: { from: 'body', schema: rollbackInputSchema },
      output: rollbackOutputSchema,
      message: 'Rollback executed successfully',
      call: (caller, input: z.input<typeof rollbackInputSchema>) => caller.recovery.rollback(input),
    }),
    defineRoute({
      method: 'post',
      path: '/api/v1/ota/recovery/restore',
      tag: 'Recovery',
      summary: 'Write a snapshot of the given version to the inactive slot and make it the next boot',
      role: 'admin',
      input: { from: 'body', schema: restoreInputSchema },
      output: restoreOutputSchema,
      message: 'OS restoration started',
      call: (caller, input: z.input<typeof restoreInputSchema>) => caller.recovery.restore(input),
    }),
    defineRoute({
      method: 'post',
      path: '/api/v1/ota/recovery/factory',
      tag: 'Recovery',
      summary: 'Factory reset from the recovery image (PIN and confirm: true required)',
      role: 'admin',
      input: { from: 'body', schema: factoryInputSchema },
      output: factoryOutputSchema,
      message: 'Factory reset started',
      call: (caller, input: z.input<typeof factoryInputSchema>) => caller.recovery.factoryReset(input),
    }),
    defineRoute({
      method: 'post',
      path: '/api/v1/ota/recovery/upload',
      tag: 'Recovery',
      summary: 'Upload a signed bundle as the recovery image (multipart `file`)',
      role: 'admin',
      input: { from: 'multipart', schema: recoveryUploadFormSchema },
      before: [authorize, receive],
      output: recoveryUploadOutputSchema,
      message: 'Recovery image uploaded successfully',
      call: (caller, input: Parameters<typeof caller.recovery.storeRecoveryImage>[0]) =>
        caller.recovery.storeRecoveryImage(input),
    }),
  ];
}
