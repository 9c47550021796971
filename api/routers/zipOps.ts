import type { RestMeta } from '../meta.js';
import {
  MAX_ZIP_UPLOAD_BYTES,
  ZIP_FIELD,
  ZIP_PROGRESS_NOT_FOUND,
  zipPreflightInputSchema,
  zipProgressInputSchema,
  zipProgressOutputSchema,
  zipStartInputSchema,
  zipStartOutputSchema,
  zipUploadFormSchema,
} from '../schemas/zip.js';
import { adminProcedure, router, viewerProcedure } from '../trpc.js';

const PROGRESS_HINT =
  'Progress: GET /ota-update-progress/{update_id}; terminal output: Socket.IO namespace /ota-update ' +
  '(event terminal_output) or ws://…/ota-update.';

/** POST /ota-configure and POST /ota-update: one procedure, the kind fixed by the path. */
function zipUpload(path: string, kind: 'configure' | 'plugin', summary: string, what: string): RestMeta {
  return {
    method: 'post',
    path,
    spec: 'ota-zip-updates',
    tag: 'ZIP updates',
    summary,
    description: `${what} ${PROGRESS_HINT}`,
    bind: { kind },
    reply: { kind: 'plain' },
    upload: {
      form: zipUploadFormSchema,
      file: ZIP_FIELD,
      authorize: 'zipOps.preflight',
      target: 'zip-archive',
      maxBytes: MAX_ZIP_UPLOAD_BYTES,
    },
    refusals: {
      400: '"No file provided", "No file selected" or "Invalid file type. Please upload a ZIP file"',
      409: 'Another operation is in progress on this gateway (OTA_OPERATION_IN_PROGRESS)',
    },
  };
}

/**
 * The ZIP operations of ota-zip-updates.md. Both change what the gateway trusts and runs, so both
 * are admin-only; following one's progress is a read.
 */
export const zipOpsRouter = router({
  /** Everything `start` checks that can be checked before a large upload is read. */
  preflight: adminProcedure.input(zipPreflightInputSchema).query(({ ctx }) => {
    ctx.deps.zipOps.assertIdle(ctx.gateway.id);
    return { ready: true as const };
  }),

  start: adminProcedure
    .meta({
      rest: [
        zipUpload(
          '/ota-configure',
          'configure',
          'Apply a configuration ZIP (gantry-config.json: feed, trusted root, signing keys, PIN hash, settings)',
          'The layout is documented in the README.',
        ),
        zipUpload(
          '/ota-update',
          'plugin',
          'Install or update a plugin ZIP (gantry-plugin.json: name, version, hooks)',
          'The plugin\u2019s post-install hook runs at once; if it fails the previous version is restored.',
        ),
      ],
    })
    .input(zipStartInputSchema)
    .output(zipStartOutputSchema)
    .mutation(({ ctx, input }) =>
      ctx.deps.zipOps.start({
        gatewayId: ctx.gateway.id,
        kind: input.kind,
        uploadId: input.upload_id,
        username: ctx.user.username,
      }),
    ),

  progress: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/ota-update-progress/:update_id',
        spec: 'ota-zip-updates',
        tag: 'ZIP updates',
        summary: 'Progress of a configuration or plugin operation',
        description: 'idle, in_progress, complete or error.',
        reply: { kind: 'plain', notFound: ZIP_PROGRESS_NOT_FOUND },
      },
    })
    .input(zipProgressInputSchema)
    .output(zipProgressOutputSchema)
    .query(({ ctx, input }) => ctx.deps.zipOps.progress(ctx.gateway.id, input.update_id)),

  /** What the configuration and plugin operations installed (for the UI and for tests). */
  provisioning: viewerProcedure.query(({ ctx }) => {
    const p = ctx.deps.provisioning;
    const id = ctx.gateway.id;
    const feed = p.feed(id);
    return {
      configuration_version: p.configurationVersion(id),
      feed: feed ? { metadata_url: feed.metadataUrl, targets_url: feed.targetsUrl } : null,
      trusted_keys: p.trustedKeys(id).length,
      plugins: p.plugins(id).map((pl) => ({ name: pl.name, version: pl.version, hooks: pl.hooks })),
    };
  }),
});
