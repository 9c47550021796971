import { z } from 'zod';
import { ZIP_JOB_KINDS } from '../../core/job-kinds.js';
import { TERMINAL_STREAMS } from '../../services/zip-manifests.js';

export {
  CONFIG_MANIFEST,
  configurationManifestSchema,
  DEFAULT_HOOK_TIMEOUT_SECONDS,
  HOOK_KINDS,
  PLUGIN_MANIFEST,
  PLUGIN_NAME,
  pluginManifestSchema,
  SCRYPT_HASH,
  TERMINAL_STREAMS,
  type ConfigurationManifest,
  type HookKind,
  type PluginManifest,
} from '../../services/zip-manifests.js';

/**
 * The payloads of the three ZIP routes of ota-zip-updates.md. The archives' own manifests are the
 * provisioning service's format (services/zip-manifests.ts), re-exported here for OpenAPI and tests.
 */

export const ZIP_OPERATION_KINDS = ZIP_JOB_KINDS;

/** The multipart field of both uploads, and their size limit (a Gantry decision, in the README). */
export const ZIP_FIELD = 'ota_zip_file';
export const MAX_ZIP_UPLOAD_BYTES = 64 * 1024 * 1024;

/** The form of POST /ota-configure and POST /ota-update. */
export const zipUploadFormSchema = z.object({
  [ZIP_FIELD]: z.string().meta({ format: 'binary', description: 'The ZIP archive' }),
});

export const zipPreflightInputSchema = z.lazy(() => z.strictObject({ kind: z.enum(ZIP_OPERATION_KINDS) }));

export const zipStartInputSchema = z.lazy(() =>
  z.strictObject({
    kind: z.enum(ZIP_OPERATION_KINDS),
    /** Handed out by the upload route for the file it stored; single use. */
    upload_id: z.string().min(1).max(128),
  }),
);

/** The response of POST /ota-configure and POST /ota-update, exactly as documented. */
export const zipStartOutputSchema = z.lazy(() =>
  z.object({
    success: z.boolean(),
    update_id: z.string(),
    message: z.string(),
    status: z.literal('pending'),
    progress: z.literal(0),
  }),
);
export type ZipStartOutput = z.infer<typeof zipStartOutputSchema>;

export const zipProgressInputSchema = z.lazy(() => z.strictObject({ update_id: z.string().min(1).max(128) }));

export const PROGRESS_STATUSES = ['idle', 'in_progress', 'complete', 'error', 'not_found'] as const;

/** GET /ota-update-progress/<update_id>, exactly as documented. */
export const zipProgressOutputSchema = z.lazy(() =>
  z.object({
    success: z.boolean(),
    status: z.enum(PROGRESS_STATUSES),
    progress: z.number().min(0).max(100),
    message: z.string(),
    error: z.string().optional(),
  }),
);
export type ZipProgressOutput = z.infer<typeof zipProgressOutputSchema>;

/** An unknown id (or another gateway's), answered with 404 in the progress shape, as documented. */
export const ZIP_PROGRESS_NOT_FOUND: ZipProgressOutput = {
  success: false,
  status: 'not_found',
  progress: 0,
  message: 'Update not found',
};

/** One line of terminal output, as sent on `/ota-update` (event `terminal_output`). */
export const terminalOutputSchema = z.lazy(() =>
  z.object({
    update_id: z.string(),
    stream: z.enum(TERMINAL_STREAMS),
    line: z.string(),
    timestamp: z.string(),
  }),
);
export type TerminalOutput = z.infer<typeof terminalOutputSchema>;
