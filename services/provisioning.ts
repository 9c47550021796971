import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Metadata, MetadataKind } from '@tufjs/models';
import { z } from 'zod';
import type { SettingsDocument } from '../core/settings-document.js';
import {
  CONFIG_MANIFEST,
  configurationManifestSchema,
  PLUGIN_MANIFEST,
  pluginManifestSchema,
  type ConfigurationManifest,
  HOOK_KINDS,
  type HookKind,
  type PluginManifest,
} from './zip-manifests.js';
import { GantryError } from '../core/errors.js';
import type { ProxySettings } from '../feed/http/proxy.js';
import { isoSeconds } from '../core/format.js';
import { fsyncDirSync, removeTreeSync } from '../core/fsutil.js';
import type { ExtractOutput, ZipManifestSummary, ZipOperationKind } from '../machines/zip-operation.js';
import type { GatewayRegistry } from './gateways.js';
import { hookBaseEnv, runHook, TerminalHub, type HookOutcome } from './hooks.js';
import type { LogService } from './logs.js';
import { isUsableHash } from './safety.js';
import type { SettingsService } from './settings.js';
import { DEFAULT_ZIP_LIMITS, extractZip, type ZipLimits } from './zip-extract.js';
import { ZIP_JOB_KINDS } from '../core/job-kinds.js';

/**
 * What the ZIP operations installed on a gateway, and the questions the update pipeline asks of
 * it: which keys to trust, which feed to poll, which hooks to run.
 *
 * On disk, under the gateway's directory:
 *   config/{current,previous}/            the configuration archive, extracted
 *   plugins/<name>/{current,previous}/    each plugin archive, extracted
 * A new version is extracted beside them (`.staging-<update id>`), then swapped in by renames, so a
 * crash or a refused step leaves either the old or the new tree as `current`, never a mix.
 */

/** The part of SafetyService this needs; optional until every build has the safety interlock. */
export interface SafetyPinSetter {
  setPin(gatewayId: string, input: { pin?: string; hash?: string }): unknown;
}

export interface ProvisioningDeps {
  config: { dataDir: string };
  clock: () => number;
  gateways: GatewayRegistry;
  settings: SettingsService;
  logs: LogService;
  safety?: SafetyPinSetter;
  /** Told after a configuration was applied or removed (its feed may have changed). */
  onConfigurationChanged?: (gatewayId: string) => void;
}

export interface ProvisioningOptions {
  /** Between SIGTERM and SIGKILL when a hook overruns its timeout. */
  killGraceMs?: number;
  zipLimits?: ZipLimits;
}

export interface FeedConfig {
  metadataUrl: string;
  targetsUrl: string;
  trustedRootPath: string;
  /** Only the fields the archive sets (an empty string: no proxy); the environment fills the rest. */
  proxy?: ProxySettings;
}

export interface HookEntry {
  plugin: string;
  path: string;
  timeoutSeconds: number;
}

interface HookTarget extends HookEntry {
  version: string;
  /** The plugin's current directory: the hook's working directory. */
  dir: string;
}

export interface HookFailure {
  plugin: string;
  exitCode: number | null;
  reason: string;
}

export interface RunHooksOptions {
  signal?: AbortSignal;
  /** Tags the terminal lines; defaults to env.GANTRY_UPDATE_ID, else "hooks:<kind>". */
  updateId?: string;
}

export interface InstalledPlugin {
  name: string;
  version: string;
  hooks: HookKind[];
  timeoutSeconds: number;
  dir: string;
  /** Absolute path of its component handler executable, if it declares one. */
  componentHandler: string | null;
}

/** Written next to what was installed (never taken from an archive: the name is reserved). */
export const INSTALL_RECORD = '.gantry-install.json';

const installRecordSchema = z.object({
  update_id: z.string(),
  kind: z.enum(ZIP_JOB_KINDS),
  sha256: z.string(),
  installed_at: z.string(),
  /** The settings document before this configuration was applied, to undo an interrupted apply. */
  settings_before: z.record(z.string(), z.unknown()).optional(),
});
type InstallRecord = z.infer<typeof installRecordSchema>;

function exists(p: string): boolean {
  return fs.existsSync(p);
}

function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** A regular file inside `root` (lstat: a symlink is not followed out of the tree). */
function regularFile(root: string, rel: string, what: string): string {
  const full = path.resolve(root, rel);
  if (!full.startsWith(path.resolve(root) + path.sep)) throw new Error(`${what} ${rel} escapes the archive`);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(full);
  } catch {
    throw new Error(`${what} ${rel} is missing from the archive`);
  }
  if (!st.isFile()) throw new Error(`${what} ${rel} is not a regular file`);
  return full;
}

function describeZod(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.join('.') || '(root)'}: ${issue.message}`;
}

function parseManifest<T extends z.ZodType>(stageDir: string, name: string, schema: T): z.infer<T> {
  const file = regularFile(stageDir, name, 'Manifest');
  let json: unknown;
  try {
    json = readJson(file);
  } catch {
    throw new Error(`${name} is not valid JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(`${name}: ${describeZod(parsed.error)}`);
  return parsed.data;
}

/** An Ed25519 public key in PEM; a private key (which createPublicKey would accept) is refused. */
function ed25519PublicKey(pem: string): KeyObject {
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem) || /PRIVATE KEY/.test(pem)) {
    throw new Error('not a PEM public key');
  }
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The current/previous swap of one install root. `tag` (the update id) names the leftovers, so a
 * later step of the same operation (or start-up recovery) can undo or finish it.
 */
const swap = {
  dirs(root: string, tag: string) {
    return {
      current: path.join(root, 'current'),
      previous: path.join(root, 'previous'),
      trash: path.join(root, `.trash-${tag}`),
      failed: path.join(root, `.failed-${tag}`),
    };
  },

  /** stage → current, current → previous; the old previous is kept as trash until commit. */
  in(root: string, stageDir: string, tag: string): void {
    const d = swap.dirs(root, tag);
    fs.mkdirSync(root, { recursive: true });
    if (exists(d.previous)) fs.renameSync(d.previous, d.trash);
    if (exists(d.current)) fs.renameSync(d.current, d.previous);
    try {
      fs.renameSync(stageDir, d.current);
    } catch (err) {
      if (exists(d.previous) && !exists(d.current)) fs.renameSync(d.previous, d.current);
      if (exists(d.trash) && !exists(d.previous)) fs.renameSync(d.trash, d.previous);
      throw err;
    }
    fsyncDirSync(root);
    fsyncDirSync(path.dirname(stageDir));
  },

  /** Undoes `in`: previous is current again, and the older one previous. */
  back(root: string, tag: string): void {
    const d = swap.dirs(root, tag);
    if (exists(d.current)) fs.renameSync(d.current, d.failed);
    if (exists(d.previous)) fs.renameSync(d.previous, d.current);
    if (exists(d.trash)) fs.renameSync(d.trash, d.previous);
    if (exists(root)) fsyncDirSync(root);
    fs.rmSync(d.failed, { recursive: true, force: true });
  },

  /**
   * After a crash: a missing `current` means the swap stopped halfway; put the old one back (and
   * the older one, kept as trash, back as previous). The other leftovers are the start-up sweep's.
   */
  recover(root: string): void {
    if (!exists(root)) return;
    const d = swap.dirs(root, '');
    if (!exists(d.current) && exists(d.previous)) fs.renameSync(d.previous, d.current);
    for (const name of fs.readdirSync(root)) {
      if (name.startsWith('.trash-') && !exists(d.previous)) fs.renameSync(path.join(root, name), d.previous);
    }
  },
};

export class ProvisioningService {
  /** Terminal output of ZIP operations and hooks, for the `/ota-update` stream. */
  readonly terminal = new TerminalHub();
  private readonly killGraceMs: number;
  private readonly zipLimits: ZipLimits;

  constructor(
    private readonly deps: ProvisioningDeps,
    opts: ProvisioningOptions = {},
  ) {
    this.killGraceMs = opts.killGraceMs ?? 5000;
    this.zipLimits = opts.zipLimits ?? DEFAULT_ZIP_LIMITS;
  }

  // ── where things live ─────────────────────────────────────────────────────────────────────

  private gatewayDir(gatewayId: string): string {
    if (!this.deps.gateways.get(gatewayId)) {
      throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${gatewayId} not found`);
    }
    return this.deps.gateways.gatewayDir(gatewayId);
  }

  private configRoot(gatewayId: string): string {
    return path.join(this.gatewayDir(gatewayId), 'config');
  }

  private pluginsRoot(gatewayId: string): string {
    return path.join(this.gatewayDir(gatewayId), 'plugins');
  }

  /** `<dataDir>/trusted-keys/*.pem`: keys trusted on every gateway (development, bench). */
  private devKeysDir(): string {
    return path.join(this.deps.config.dataDir, 'trusted-keys');
  }

  private currentConfigDir(gatewayId: string): string | null {
    const dir = path.join(this.configRoot(gatewayId), 'current');
    return exists(path.join(dir, CONFIG_MANIFEST)) ? dir : null;
  }

  // ── the API the update pipeline uses ──────────────────────────────────────────────────────

  /** The applied configuration manifest, or null if none was ever applied (or after reset). */
  configuration(gatewayId: string): ConfigurationManifest | null {
    const dir = this.currentConfigDir(gatewayId);
    if (!dir) return null;
    const parsed = configurationManifestSchema.safeParse(readJson(path.join(dir, CONFIG_MANIFEST)));
    return parsed.success ? parsed.data : null;
  }

  /**
   * Ed25519 public keys bundles may be signed with: the current configuration's `signing_keys`,
   * plus every `*.pem` in `<dataDir>/trusted-keys/`. A key that no longer parses is left out
   * (fewer trusted keys can only refuse more bundles, never accept one more).
   */
  trustedKeys(gatewayId: string): KeyObject[] {
    const files: string[] = [];
    const dir = this.currentConfigDir(gatewayId);
    const manifest = this.configuration(gatewayId);
    if (dir && manifest?.signing_keys) files.push(...manifest.signing_keys.map((k) => path.join(dir, k)));
    const devDir = this.devKeysDir();
    if (exists(devDir)) {
      for (const name of fs.readdirSync(devDir).sort()) {
        if (name.endsWith('.pem')) files.push(path.join(devDir, name));
      }
    }
    const keys: KeyObject[] = [];
    const seen = new Set<string>();
    for (const file of files) {
      try {
        const key = ed25519PublicKey(fs.readFileSync(file, 'utf8'));
        const id = key.export({ type: 'spki', format: 'der' }).toString('base64');
        if (!seen.has(id)) {
          seen.add(id);
          keys.push(key);
        }
      } catch {
        /* unreadable or not Ed25519: not trusted */
      }
    }
    return keys;
  }

  feed(gatewayId: string): FeedConfig | null {
    const dir = this.currentConfigDir(gatewayId);
    const manifest = this.configuration(gatewayId);
    if (!dir || !manifest?.feed || !manifest.trusted_root) return null;
    const { https_proxy, http_proxy, no_proxy } = manifest.feed;
    const proxy: ProxySettings = {
      ...(https_proxy !== undefined ? { httpsProxy: https_proxy } : {}),
      ...(http_proxy !== undefined ? { httpProxy: http_proxy } : {}),
      ...(no_proxy !== undefined ? { noProxy: no_proxy } : {}),
    };
    return {
      metadataUrl: manifest.feed.metadata_url,
      targetsUrl: manifest.feed.targets_url,
      trustedRootPath: path.join(dir, manifest.trusted_root),
      ...(Object.keys(proxy).length > 0 ? { proxy } : {}),
    };
  }

  /** sha256 of the ZIP that produced the current configuration; null when there is none. */
  configurationVersion(gatewayId: string): string | null {
    const dir = this.currentConfigDir(gatewayId);
    return dir ? (this.installRecord(dir)?.sha256 ?? null) : null;
  }

  /** Installed plugins with a readable manifest, by name. */
  plugins(gatewayId: string): InstalledPlugin[] {
    return this.installed(gatewayId).map(({ manifest, dir }) => ({
      name: manifest.name,
      version: manifest.version,
      hooks: HOOK_KINDS.filter((k) => manifest.hooks[k]),
      timeoutSeconds: manifest.timeout_seconds,
      dir,
      componentHandler: manifest.component_handler ? path.join(dir, manifest.component_handler) : null,
    }));
  }

  /**
   * Runs a plugin's component handler with one verb (README: the component handler protocol), like
   * a hook: no shell, its own process group, a clean environment, the plugin's timeout. Never rejects.
   */
  async runComponentHandler(
    gatewayId: string,
    pluginName: string,
    verb: string,
    env: Record<string, string>,
    opts: { stdinFile?: string; updateId: string },
  ): Promise<HookOutcome & { lastError: string | null }> {
    const plugin = this.plugins(gatewayId).find((p) => p.name === pluginName);
    if (!plugin?.componentHandler) {
      return {
        ok: false,
        exitCode: null,
        signal: null,
        timedOut: false,
        aborted: false,
        reason: `plugin ${pluginName} has no component handler`,
        lastError: null,
      };
    }
    const line = (stream: 'stdout' | 'stderr' | 'system', text: string) =>
      this.terminal.publish(gatewayId, {
        updateId: opts.updateId,
        stream,
        line: text,
        at: this.deps.clock(),
      });
    const source = `handler:${plugin.name}`;
    let lastError: string | null = null;
    line('system', `Running ${verb} of component handler ${plugin.name}`);
    const outcome = await runHook(
      {
        plugin: plugin.name,
        path: plugin.componentHandler,
        cwd: plugin.dir,
        timeoutSeconds: plugin.timeoutSeconds,
        args: [verb],
        stdinFile: opts.stdinFile,
        env: {
          ...hookBaseEnv(),
          ...env,
          GANTRY_GATEWAY_ID: gatewayId,
          GANTRY_HANDLER_VERB: verb,
          GANTRY_PLUGIN_NAME: plugin.name,
          GANTRY_PLUGIN_VERSION: plugin.version,
          GANTRY_PLUGIN_DIR: plugin.dir,
        },
      },
      {
        killGraceMs: this.killGraceMs,
        onLine: (stream, text) => {
          line(stream, text);
          if (stream === 'stdout') this.deps.logs.info(gatewayId, source, text);
          else {
            lastError = text;
            this.deps.logs.warn(gatewayId, source, text);
          }
        },
      },
    );
    line('system', `${verb} of component handler ${plugin.name}: ${outcome.reason}`);
    return { ...outcome, lastError };
  }

  /** The hooks of that kind of every installed plugin, in plugin-name order. */
  hooks(gatewayId: string, kind: HookKind): HookEntry[] {
    return this.hookTargets(gatewayId, kind).map(({ plugin, path: p, timeoutSeconds }) => ({
      plugin,
      path: p,
      timeoutSeconds,
    }));
  }

  /**
   * Runs every hook of that kind, one after the other (a health check must not race another),
   * each to its end or its timeout. Their output goes to the terminal stream and the gateway log.
   * Never rejects; `ok` is false if any hook failed, timed out or was aborted.
   */
  async runHooks(
    gatewayId: string,
    kind: HookKind,
    env: Record<string, string>,
    opts: RunHooksOptions = {},
  ): Promise<{ ok: boolean; failures: HookFailure[] }> {
    const updateId = opts.updateId ?? env.GANTRY_UPDATE_ID ?? `hooks:${kind}`;
    const failures: HookFailure[] = [];
    for (const hook of this.hookTargets(gatewayId, kind)) {
      if (opts.signal?.aborted) {
        failures.push({ plugin: hook.plugin, exitCode: null, reason: 'aborted' });
        continue;
      }
      const outcome = await this.runOne(gatewayId, hook, kind, updateId, env, opts.signal);
      if (!outcome.ok)
        failures.push({ plugin: hook.plugin, exitCode: outcome.exitCode, reason: outcome.reason });
    }
    return { ok: failures.length === 0, failures };
  }

  /** Factory reset: the configuration and every plugin, current and previous, are dropped. */
  reset(gatewayId: string): void {
    removeTreeSync(this.configRoot(gatewayId));
    removeTreeSync(this.pluginsRoot(gatewayId));
    this.deps.logs.info(gatewayId, 'provisioning', 'Configuration and plugins removed (factory reset)');
    this.deps.onConfigurationChanged?.(gatewayId);
  }

  // ── the steps of a ZIP operation (machines/zip-operation.ts) ─────────────────────────────

  private stageDir(gatewayId: string, kind: ZipOperationKind, updateId: string): string {
    const root = kind === 'configure' ? this.configRoot(gatewayId) : this.pluginsRoot(gatewayId);
    return path.join(root, `.staging-${updateId}`);
  }

  async stage(
    gatewayId: string,
    kind: ZipOperationKind,
    updateId: string,
    zipPath: string,
  ): Promise<ExtractOutput> {
    const stageDir = this.stageDir(gatewayId, kind, updateId);
    fs.rmSync(stageDir, { recursive: true, force: true });
    const result = await extractZip(zipPath, stageDir, this.zipLimits);
    return { stageDir, files: result.files.length, bytes: result.totalBytes };
  }

  /** Reads and checks the manifest and everything it references; changes nothing. */
  async validate(gatewayId: string, kind: ZipOperationKind, stageDir: string): Promise<ZipManifestSummary> {
    if (exists(path.join(stageDir, INSTALL_RECORD))) throw new Error(`${INSTALL_RECORD} is a reserved name`);
    if (kind === 'configure') {
      const m = parseManifest(stageDir, CONFIG_MANIFEST, configurationManifestSchema);
      if (m.trusted_root) this.checkTrustedRoot(stageDir, m.trusted_root);
      for (const rel of m.signing_keys ?? []) {
        const file = regularFile(stageDir, rel, 'Signing key');
        try {
          ed25519PublicKey(fs.readFileSync(file, 'utf8'));
        } catch (err) {
          throw new Error(`Signing key ${rel} is not an Ed25519 public key: ${(err as Error).message}`);
        }
      }
      if (m.safety_pin_hash && !this.deps.safety) {
        throw new Error('safety_pin_hash cannot be applied: this build has no safety interlock');
      }
      if (m.safety_pin_hash && !isUsableHash(m.safety_pin_hash)) {
        throw new Error('safety_pin_hash: not a usable scrypt PIN hash (N a power of two, sane r and p)');
      }
      return { kind: 'configuration' };
    }
    const m = parseManifest(stageDir, PLUGIN_MANIFEST, pluginManifestSchema);
    const hooks: HookKind[] = [];
    for (const hookKind of ['post-install', 'health-check'] as const) {
      const rel = m.hooks[hookKind];
      if (!rel) continue;
      regularFile(stageDir, rel, `Hook ${hookKind}`);
      hooks.push(hookKind);
    }
    if (m.component_handler) regularFile(stageDir, m.component_handler, 'Component handler');
    return { kind: 'plugin', name: m.name, version: m.version, hooks, timeoutSeconds: m.timeout_seconds };
  }

  private checkTrustedRoot(stageDir: string, rel: string): void {
    const file = regularFile(stageDir, rel, 'Trusted root');
    try {
      const root = Metadata.fromJSON(MetadataKind.Root, readJson(file) as never);
      // A root must carry its own threshold of root-key signatures, or it proves nothing.
      root.verifyDelegate('root', root);
    } catch (err) {
      throw new Error(`Trusted root ${rel} is not valid signed TUF root metadata: ${(err as Error).message}`);
    }
  }

  /**
   * Swaps the staged configuration in, then applies its settings and PIN. If a later step fails,
   * the swap and the settings are undone before the error is reported.
   */
  async applyConfiguration(
    gatewayId: string,
    updateId: string,
    stageDir: string,
    zipPath: string,
  ): Promise<void> {
    const manifest = parseManifest(stageDir, CONFIG_MANIFEST, configurationManifestSchema);
    const settingsBefore = this.deps.settings.get(gatewayId);
    this.writeInstallRecord(stageDir, {
      update_id: updateId,
      kind: 'configure',
      sha256: await sha256File(zipPath),
      installed_at: isoSeconds(this.deps.clock()),
      settings_before: settingsBefore,
    });
    const root = this.configRoot(gatewayId);
    swap.in(root, stageDir, updateId);
    try {
      if (manifest.settings) this.deps.settings.update(gatewayId, manifest.settings);
      if (manifest.safety_pin_hash) {
        if (!this.deps.safety) throw new Error('safety_pin_hash cannot be applied: no safety interlock');
        await this.deps.safety.setPin(gatewayId, { hash: manifest.safety_pin_hash });
      }
    } catch (err) {
      this.deps.settings.update(gatewayId, settingsBefore);
      swap.back(root, updateId);
      throw err;
    }
    this.deps.logs.info(gatewayId, 'provisioning', `Configuration ${updateId} applied`);
    this.deps.onConfigurationChanged?.(gatewayId);
  }

  /** Makes the declared hooks executable (nothing else is) and swaps the plugin in. */
  async installPlugin(gatewayId: string, updateId: string, stageDir: string, zipPath: string): Promise<void> {
    const manifest = parseManifest(stageDir, PLUGIN_MANIFEST, pluginManifestSchema);
    for (const rel of Object.values(manifest.hooks)) {
      if (rel) fs.chmodSync(regularFile(stageDir, rel, 'Hook'), 0o755);
    }
    if (manifest.component_handler) {
      fs.chmodSync(regularFile(stageDir, manifest.component_handler, 'Component handler'), 0o755);
    }
    this.writeInstallRecord(stageDir, {
      update_id: updateId,
      kind: 'plugin',
      sha256: await sha256File(zipPath),
      installed_at: isoSeconds(this.deps.clock()),
    });
    swap.in(path.join(this.pluginsRoot(gatewayId), manifest.name), stageDir, updateId);
    this.deps.logs.info(
      gatewayId,
      'provisioning',
      `Plugin ${manifest.name} ${manifest.version} installed (${updateId})`,
    );
  }

  /** The freshly installed plugin's post-install hook; throws if it fails. */
  async runPostInstall(
    gatewayId: string,
    updateId: string,
    plugin: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const hook = this.hookTargets(gatewayId, 'post-install').find((h) => h.plugin === plugin);
    if (!hook) return;
    const outcome = await this.runOne(
      gatewayId,
      hook,
      'post-install',
      updateId,
      { GANTRY_UPDATE_ID: updateId },
      signal,
    );
    if (!outcome.ok) throw new Error(`Post-install hook of ${plugin} failed: ${outcome.reason}`);
  }

  /** Puts back the version the operation replaced (or removes a first install). */
  async rollbackPlugin(gatewayId: string, updateId: string, plugin: string): Promise<void> {
    const root = path.join(this.pluginsRoot(gatewayId), plugin);
    swap.back(root, updateId);
    if (exists(root) && fs.readdirSync(root).length === 0) fs.rmdirSync(root);
    this.deps.logs.warn(
      gatewayId,
      'provisioning',
      `Plugin ${plugin}: previous version restored (${updateId})`,
    );
  }

  /** Leftovers of a finished operation: its staging tree, and the version two back. */
  async cleanup(gatewayId: string, updateId: string): Promise<void> {
    const roots = [this.configRoot(gatewayId)];
    const plugins = this.pluginsRoot(gatewayId);
    if (exists(plugins)) {
      roots.push(
        plugins,
        ...fs
          .readdirSync(plugins)
          .filter((n) => !n.startsWith('.'))
          .map((n) => path.join(plugins, n)),
      );
    }
    for (const root of roots) {
      for (const prefix of ['.staging-', '.trash-', '.failed-']) {
        await fs.promises.rm(path.join(root, prefix + updateId), { recursive: true, force: true });
      }
    }
  }

  /**
   * Start-up, the `fail-and-undo` restart policy of configuration ZIPs: finishes or undoes a
   * configuration swap a crash interrupted, and undoes what one of the interrupted operations
   * `interrupted` had already swapped in (its job is reported as failed, so the previous version
   * must be the one in place), settings included.
   */
  recoverConfiguration(gatewayId: string, interrupted: ReadonlySet<string>): void {
    this.recoverRoots(gatewayId, [this.configRoot(gatewayId)], interrupted);
  }

  /** The same for plugin ZIPs, over every installed plugin. */
  recoverPlugins(gatewayId: string, interrupted: ReadonlySet<string>): void {
    const plugins = this.pluginsRoot(gatewayId);
    if (!exists(plugins)) return;
    const roots = fs
      .readdirSync(plugins)
      .filter((n) => !n.startsWith('.'))
      .map((n) => path.join(plugins, n));
    this.recoverRoots(gatewayId, roots, interrupted);
  }

  private recoverRoots(gatewayId: string, roots: string[], interrupted: ReadonlySet<string>): void {
    const configRoot = this.configRoot(gatewayId);
    for (const root of roots) {
      const current = path.join(root, 'current');
      const record = exists(current) ? this.installRecord(current) : null;
      if (record && interrupted.has(record.update_id)) {
        swap.back(root, record.update_id);
        if (root === configRoot && record.settings_before) {
          this.deps.settings.update(gatewayId, record.settings_before as SettingsDocument);
        }
        this.deps.logs.warn(gatewayId, 'provisioning', `Interrupted operation ${record.update_id} undone`);
      }
      swap.recover(root);
      // A plugin with no version left (its first install undone) is no plugin: leftovers and all.
      if (root !== configRoot && !exists(current) && !exists(path.join(root, 'previous'))) {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }
    // Staging trees, trash and failed versions left by the crash are the start-up sweep's
    // (services/data-dir-sweep.ts), which runs once this has put back what they may hold.
  }

  // ── helpers ───────────────────────────────────────────────────────────────────────────────

  private installed(gatewayId: string): Array<{ manifest: PluginManifest; dir: string }> {
    const root = this.pluginsRoot(gatewayId);
    if (!exists(root)) return [];
    const out: Array<{ manifest: PluginManifest; dir: string }> = [];
    for (const name of fs.readdirSync(root).sort()) {
      if (name.startsWith('.')) continue;
      const dir = path.join(root, name, 'current');
      try {
        out.push({ manifest: pluginManifestSchema.parse(readJson(path.join(dir, PLUGIN_MANIFEST))), dir });
      } catch {
        /* no or broken manifest: not an installed plugin */
      }
    }
    return out;
  }

  private hookTargets(gatewayId: string, kind: HookKind): HookTarget[] {
    return this.installed(gatewayId).flatMap(({ manifest, dir }) => {
      const rel = manifest.hooks[kind];
      return rel
        ? [
            {
              plugin: manifest.name,
              version: manifest.version,
              path: path.join(dir, rel),
              dir,
              timeoutSeconds: manifest.timeout_seconds,
            },
          ]
        : [];
    });
  }

  private installRecord(dir: string): InstallRecord | null {
    try {
      return installRecordSchema.parse(readJson(path.join(dir, INSTALL_RECORD)));
    } catch {
      return null;
    }
  }

  private writeInstallRecord(dir: string, record: InstallRecord): void {
    fs.writeFileSync(path.join(dir, INSTALL_RECORD), JSON.stringify(record, null, 2), { mode: 0o644 });
  }

  private async runOne(
    gatewayId: string,
    hook: HookTarget,
    kind: HookKind,
    updateId: string,
    env: Record<string, string>,
    signal?: AbortSignal,
  ) {
    const cwd = hook.dir;
    const line = (stream: 'stdout' | 'stderr' | 'system', text: string) => {
      this.terminal.publish(gatewayId, {
        updateId,
        stream,
        line: text,
        at: this.deps.clock(),
      });
    };
    const source = `hook:${hook.plugin}`;
    line('system', `Running ${kind} hook of ${hook.plugin}`);
    const outcome = await runHook(
      {
        plugin: hook.plugin,
        path: hook.path,
        cwd,
        timeoutSeconds: hook.timeoutSeconds,
        env: {
          ...hookBaseEnv(),
          ...env,
          GANTRY_GATEWAY_ID: gatewayId,
          GANTRY_HOOK: kind,
          GANTRY_PLUGIN_NAME: hook.plugin,
          GANTRY_PLUGIN_VERSION: hook.version,
          GANTRY_PLUGIN_DIR: cwd,
          GANTRY_UPDATE_ID: updateId,
        },
      },
      {
        signal,
        killGraceMs: this.killGraceMs,
        onLine: (stream, text) => {
          line(stream, text);
          if (stream === 'stdout') this.deps.logs.info(gatewayId, source, text);
          else this.deps.logs.warn(gatewayId, source, text);
        },
      },
    );
    const summary = `${kind} hook of ${hook.plugin}: ${outcome.reason}`;
    line('system', summary);
    if (outcome.ok) this.deps.logs.info(gatewayId, source, summary);
    else this.deps.logs.error(gatewayId, source, summary);
    return outcome;
  }
}
