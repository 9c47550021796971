import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { GantryConfig } from '../core/config.js';
import { UPDATE_JOB_KINDS } from '../core/job-kinds.js';
import type { RunningDemoFeed } from '../feed/demo-feed.js';
import { describeSwept, filesInUse, sweepDataDir } from '../services/data-dir-sweep.js';
import { restartJobs, type InterruptedJobsHandle } from '../services/job-restart.js';
import { uploadAfterRestart } from '../services/updates/uploads.js';
import { createHttpServer, type GantryHttp } from './app.js';
import { createDeps, type DepsOptions, type GantryDeps } from './deps.js';
import { demoFeedWanted } from './feed-sources.js';
import type { OtaWsOptions } from './ota-ws.js';

export interface RunningGantry {
  deps: GantryDeps;
  http: GantryHttp;
  url: string;
  port: number;
  /** Set on the first start only, when the admin password was generated. */
  generatedAdminPassword?: string;
  stop(): Promise<void>;
}

/**
 * Applies each job kind's declared restart policy (core/job-kinds.ts `RESTART_POLICY`) to the jobs
 * the previous run left unfinished: every kind's owner supplies the hook its policy calls for.
 */
function settleInterruptedJobs(deps: GantryDeps): InterruptedJobsHandle {
  const resume = (job: Parameters<GantryDeps['updates']['resume']>[0]) => deps.updates.resume(job);
  return restartJobs(
    {
      jobs: deps.jobs,
      gatewayIds: deps.gateways.ids(),
      warn: (gatewayId, message) => deps.logs.warn(gatewayId, 'system', message),
    },
    {
      resume: { download: resume, deploy: resume, restore: resume, factory: resume },
      undo: {
        configure: (gatewayId, jobs) => deps.zipOps.afterRestart('configure', gatewayId, jobs),
        plugin: (gatewayId, jobs) => deps.zipOps.afterRestart('plugin', gatewayId, jobs),
      },
      cleanUp: {
        snapshot: (job) => deps.snapshots.afterRestart(job),
        'debug-bundle': (job) => deps.debugBundles.afterRestart(job),
        upload: uploadAfterRestart,
      },
    },
  );
}

/**
 * Removes what an interrupted run left half-made in the data dir (services/data-dir-sweep.ts),
 * once the restart policies settled the jobs that owned it, and says so in the gateway's log
 * (stderr for the data dir's own files).
 */
function sweepLeftovers(deps: GantryDeps): void {
  const recoveryImages = deps.gateways.all().flatMap((gw) => {
    const image = deps.recovery.recoveryImage(gw);
    return image ? [{ gatewayId: gw.id, path: image.path }] : [];
  });
  // An unfinished update job's staged component payloads (components/staging/<job id>).
  const componentStaging = deps.gateways
    .all()
    .flatMap((gw) =>
      deps.jobs
        .unfinished(gw.id, UPDATE_JOB_KINDS)
        .map((job) => ({ gatewayId: gw.id, path: deps.components.stagingDir(gw, job.id) })),
    );
  const swept = sweepDataDir({
    dataDir: deps.config.dataDir,
    gatewayIds: deps.gateways.ids(),
    gatewayDir: (id) => deps.gateways.gatewayDir(id),
    inUse: filesInUse(deps.jobs, [...recoveryImages, ...componentStaging]),
  });
  for (const { gatewayId, message } of describeSwept(swept)) {
    if (gatewayId === null) console.warn(`Gantry: ${message}`);
    else deps.logs.warn(gatewayId, 'system', message);
  }
}

/**
 * Starts Gantry: store opened and migrated, gateways and devices loaded, leftovers of an
 * interrupted run swept, admin ensured, then listen. Used by `npm start` and by the integration
 * tests (on port 0 with a temp data dir).
 */
export async function startGantry(
  config: GantryConfig,
  opts: DepsOptions & { ws?: OtaWsOptions } = {},
): Promise<RunningGantry> {
  // The embedded default must be able to update at once: a local demo feed, generated on the
  // first start (reused afterwards) and served on loopback for as long as the server runs.
  // Imported only then: it is a publisher (bundle builder, TUF repository, file server) that a
  // gateway with its feed configured never runs, and resident code once loaded.
  let demoFeed: RunningDemoFeed | null = null;
  if (demoFeedWanted(config)) {
    const { startDemoFeed } = await import('../feed/demo-feed.js');
    demoFeed = await startDemoFeed({
      dir: path.join(config.dataDir, 'demo-feed'),
      models: [...new Set(config.gateways.map((g) => g.model))],
    });
  }
  let deps: GantryDeps;
  let interrupted: InterruptedJobsHandle;
  try {
    deps = createDeps(config, { ...opts, demoFeed });
    // Jobs the previous run did not finish: failed and undone, or cleaned up, now (before the feed
    // is resolved from a configuration an interrupted ZIP may have swapped in); resumed below.
    interrupted = settleInterruptedJobs(deps);
  } catch (err) {
    await demoFeed?.close();
    throw err;
  }
  const admin = await deps.users.ensureAdmin(config.adminPassword);
  for (const id of deps.gateways.ids()) {
    deps.logs.info(id, 'system', 'Gantry started');
    const feed = deps.feeds.resolve(id);
    if (feed?.origin === 'demo') {
      deps.logs.info(
        id,
        'ota',
        `Using the ${feed.label}: ${demoFeed?.releases.join(', ') ?? ''}, generated and signed on this machine (no feed is configured)`,
      );
    }
  }
  // Before anything serves or resumes: nothing of this process writes the data dir yet.
  sweepLeftovers(deps);
  // Reconcile slots with what the device booted (commit or roll back a trial), then resume jobs.
  // Safety first: restored jobs must see live readings, not "unknown", when they resume.
  await deps.safety.start();
  await deps.partitions.start();
  await deps.updates.start();
  interrupted.resume();
  deps.scheduler.start();
  const http = createHttpServer(deps, { ws: opts.ws });
  await new Promise<void>((resolve, reject) => {
    http.server.once('error', reject);
    http.server.listen(config.port, config.host, () => resolve());
  });
  const { port } = http.server.address() as AddressInfo;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  let stopped = false;
  return {
    deps,
    http,
    port,
    url: `http://${hostForUrl === '0.0.0.0' ? '127.0.0.1' : hostForUrl}:${port}`,
    generatedAdminPassword: admin.generatedPassword,
    async stop() {
      if (stopped) return;
      stopped = true;
      await http.close();
      await deps.scheduler.stop();
      await deps.updates.stop();
      await deps.snapshots.stop();
      await deps.debugBundles.stop();
      deps.partitions.stop();
      await deps.safety.stop();
      await deps.gateways.close();
      await demoFeed?.close();
      deps.db.$client.close();
    },
  };
}
