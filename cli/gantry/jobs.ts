import cliProgress from 'cli-progress';
import { CliFailure, type Outputs, type Session } from './session.js';

type Progress = Outputs['updates']['progress'];

/** A live view only needs these, which both the progress event and the progress query carry. */
interface Snapshot {
  status: string;
  percentage: number;
  operation: string;
  speed: string;
  eta: string;
}

const POLL_MS = 2000;
const FAILED = ['error', 'cancelled'];
const TRANSFERRING = ['pending', 'downloading', 'deploying', 'restoring'];

/** Shows one job's progress: a bar on a terminal, a line per change otherwise, nothing with --json. */
function progressView(s: Session, jobId: string) {
  if (s.opts.json) return { show: () => undefined, stop: () => undefined };
  if (!s.io.interactive) {
    let last = '';
    return {
      show(p: Snapshot) {
        const line = `${jobId}: ${p.status} (${p.operation}) ${p.percentage}%`;
        if (line !== last) s.io.err(line);
        last = line;
      },
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${jobId} [{bar}] {percentage}% | {speed} | ETA {remaining} | {operation}`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(100, 0, { speed: '-', remaining: '-', operation: 'starting' });
  return {
    show: (p: Snapshot) =>
      bar.update(p.percentage, { speed: p.speed, remaining: p.eta, operation: p.operation }),
    stop: () => bar.stop(),
  };
}

/**
 * Follows a job until it reaches one of `until` (or fails), fed by the gateway's live
 * `update_progress` events. The progress query runs at once, when the subscription is up and every
 * POLL_MS: the job may finish before the subscription starts, or the WebSocket may be unreachable
 * (a proxy that drops upgrades), and the final answer always comes from the query, which carries
 * the error. Resolves to the final progress; a failed or cancelled job rejects with its code.
 */
export async function waitForJob(s: Session, jobId: string, until: readonly string[]): Promise<Progress> {
  const view = progressView(s, jobId);
  const ends = new Set([...until, ...FAILED]);
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe = () => undefined as void;
  try {
    const final = await new Promise<Progress>((resolve, reject) => {
      let polling = false;
      const poll = async () => {
        if (polling) return;
        polling = true;
        try {
          const p = await s.api.updates.progress.query({ job_id: jobId });
          view.show({
            status: p.status,
            operation: p.progress.current_operation,
            percentage: p.progress.percentage,
            speed: p.progress.speed,
            eta: p.progress.eta,
          });
          if (ends.has(p.status)) resolve(p);
        } catch (err) {
          reject(err);
        } finally {
          polling = false;
        }
      };
      const sub = s.api.monitor.events.subscribe(undefined, {
        onStarted: () => void poll(),
        onData: (e) => {
          if (e.type !== 'update_progress' || e.job_id !== jobId) return;
          view.show({ ...e, percentage: e.progress, operation: e.current_operation });
          if (ends.has(e.status)) void poll();
        },
        // Live events are a convenience here: polling carries on without them.
        onError: () => undefined,
      });
      unsubscribe = () => sub.unsubscribe();
      timer = setInterval(() => void poll(), POLL_MS);
      void poll();
    });
    if (FAILED.includes(final.status)) {
      throw new CliFailure(
        final.error?.code ?? 'CANCELLED',
        final.error?.message ?? `Job ${jobId} was ${final.status}`,
      );
    }
    return final;
  } finally {
    view.stop();
    clearInterval(timer);
    unsubscribe();
  }
}

export function describeProgress(p: Progress): string[] {
  const lines = [
    `Job ${p.job_id}: ${p.status} (${p.progress.current_operation}) ${p.progress.percentage}%`,
    `  update    ${p.update.id ?? 'upload'} ${p.update.version} → slot ${p.target_partition}`,
    `  transfer  ${p.progress.downloaded} of ${p.progress.total}` +
      (TRANSFERRING.includes(p.status) ? ` at ${p.progress.speed}, ETA ${p.progress.eta}` : ''),
    `  elapsed   ${p.elapsed_time}`,
  ];
  if (p.delivery) {
    lines.splice(
      3,
      0,
      `  delivery  ${p.delivery.path}: ${p.delivery.wire} on the wire, ${p.delivery.planned} planned`,
    );
  }
  if (p.status === 'installed') {
    lines.push(
      '  activate  reboot the gateway: the new image runs from the next boot, then the job completes',
    );
  }
  if (p.status === 'activating') lines.push('  activate  booted the new image; waiting for its health check');
  if (p.error) lines.push(`  error     ${p.error.code}: ${p.error.message}`);
  if (p.blocked_by.length) lines.push(`  blocked   ${p.blocked_by.join(', ')}`);
  return lines;
}
