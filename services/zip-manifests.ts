import { z } from 'zod';
import { checkRelativePath } from '../core/relative-path.js';
import { settingsPatchSchema } from '../core/settings-document.js';
import { parseProxyUrl } from '../feed/http/proxy.js';

/**
 * The two ZIP archive layouts of ota-zip-updates.md (a configuration, a plugin), as the
 * provisioning service reads them (documented in the README). Strict like every other input: an
 * unknown field is an error, so a misspelt `signing_key` does not silently install a gateway that
 * trusts nothing. The ZIP routes' payloads are in api/schemas/zip.ts.
 */

/** A file inside the archive, referenced from the manifest: relative, no `..`, no backslash. */
const archivePath = z.string().superRefine((value, ctx) => {
  const problem = checkRelativePath(value, 'path');
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
  else if (value.endsWith('/')) ctx.addIssue({ code: 'custom', message: 'path names a directory' });
});

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });

/** A proxy URL, or '' for "no proxy" (over the environment's). The message never echoes the value. */
const proxyUrl = z
  .string()
  .max(2048)
  .superRefine((value, ctx) => {
    if (value === '') return;
    try {
      parseProxyUrl(value, 'proxy');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message.replace(/^proxy:? ?/, '') });
    }
  });

/** core/auth.ts `hashSecret` format: scrypt$N$r$p$salt$hash (salt and hash base64). */
export const SCRYPT_HASH =
  /^scrypt\$\d{1,10}\$\d{1,4}\$\d{1,4}\$[A-Za-z0-9+/]{8,}={0,2}\$[A-Za-z0-9+/]{16,}={0,2}$/;

export const CONFIG_MANIFEST = 'gantry-config.json';
export const PLUGIN_MANIFEST = 'gantry-plugin.json';

export const configurationManifestSchema = z.lazy(() =>
  z
    .strictObject({
      kind: z.literal('configuration'),
      /** The TUF feed the update pipeline polls. */
      feed: z
        .strictObject({
          metadata_url: httpUrl,
          targets_url: httpUrl,
          /** Proxies for this feed, over HTTPS_PROXY / HTTP_PROXY / NO_PROXY field by field. */
          https_proxy: proxyUrl.optional(),
          http_proxy: proxyUrl.optional(),
          no_proxy: z.string().max(4096).optional(),
        })
        .optional(),
      /** TUF root metadata in the archive (self-signed by its threshold of root keys). */
      trusted_root: archivePath.optional(),
      /** Ed25519 public keys (PEM, SPKI) bundles must be signed with. */
      signing_keys: z.array(archivePath).max(32).optional(),
      /** Safety override PIN, already hashed (never a clear PIN in an archive). */
      safety_pin_hash: z
        .string()
        .regex(SCRYPT_HASH, 'expected a hash in the scrypt$N$r$p$salt$hash format')
        .optional(),
      /** Applied like POST /api/v1/ota/settings: any subset, nested objects merged. */
      settings: settingsPatchSchema.optional(),
    })
    .refine((m) => !m.feed || m.trusted_root !== undefined, {
      message: 'a feed needs a trusted_root',
      path: ['trusted_root'],
    }),
);
export type ConfigurationManifest = z.infer<typeof configurationManifestSchema>;

export const HOOK_KINDS = ['post-install', 'health-check'] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

/** Used as a directory name: letters, digits, '.', '_', '-', starting with a letter or digit. */
export const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const DEFAULT_HOOK_TIMEOUT_SECONDS = 60;

export const pluginManifestSchema = z.lazy(() =>
  z.strictObject({
    kind: z.literal('plugin'),
    name: z
      .string()
      .regex(PLUGIN_NAME, 'letters, digits, ".", "_" or "-", at most 64, starting with a letter or digit'),
    version: z.string().min(1).max(64),
    hooks: z.strictObject({ 'post-install': archivePath.optional(), 'health-check': archivePath.optional() }),
    /** An executable driving `plugin` components of bundles (README: the component handler protocol). */
    component_handler: archivePath.optional(),
    /** Per hook run; a hook still running then is stopped (SIGTERM, then SIGKILL). */
    timeout_seconds: z.int().min(1).max(3600).default(DEFAULT_HOOK_TIMEOUT_SECONDS),
  }),
);
export type PluginManifest = z.infer<typeof pluginManifestSchema>;

export const TERMINAL_STREAMS = ['stdout', 'stderr', 'system'] as const;
export type TerminalStream = (typeof TERMINAL_STREAMS)[number];

/** One line of an operation's terminal output (a hook's stdout/stderr or a step of the operation). */
export interface TerminalLine {
  updateId: string;
  stream: TerminalStream;
  line: string;
  /** Epoch ms. */
  at: number;
}
