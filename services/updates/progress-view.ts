import { jobPercentage, jobStateName } from '../../machines/update-job.js';
import type { JobSnapshot } from './job-types.js';

/** How a job reads to an operator: documented status, step name, percentage, speed, ETA. */
export function progressView(kind: string, snap: Pick<JobSnapshot, 'value' | 'context'>) {
  const ctx = snap.context;
  const state = jobStateName(snap);
  const transferring = state === 'downloading' || state === 'pending';
  const status =
    kind === 'deploy' && transferring
      ? 'deploying'
      : (kind === 'restore' || kind === 'factory') && transferring
        ? 'restoring'
        : state;
  const slotName = `partition_${String(ctx.targetSlot).toLowerCase()}`;
  const op: Record<string, string> = {
    pending: 'queued',
    downloading: kind === 'download' ? 'downloading' : `writing_${slotName}`,
    verifying: 'verifying',
    downloaded: 'awaiting_install',
    installing: `flashing_${slotName}`,
    awaiting_reboot: ctx.blockedBy.length ? 'waiting_for_safety' : 'awaiting_reboot',
    rebooting: 'rebooting',
    // Installed without a reboot: the new slot is the next boot, waiting for one.
    installed: 'pending_reboot',
    // Rebooted: the new slot is booting or on trial until its health check commits it.
    activating: 'trial_boot',
    complete: 'complete',
    error: 'error',
    cancelled: 'cancelled',
  };
  const percentage = jobPercentage(ctx);
  return {
    status,
    current_operation: op[state] ?? state,
    percentage,
    speedBps: transferring ? ctx.speedBps : 0,
    etaSeconds: transferring && ctx.etaSeconds !== null ? ctx.etaSeconds : 0,
  };
}
