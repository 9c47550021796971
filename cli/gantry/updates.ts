import { Option, type Command } from 'commander';
import { describeProgress, waitForJob } from './jobs.js';
import { table, type Run, type Session } from './session.js';

const SLOTS = ['A', 'B'] as const;
const STRATEGIES = ['seamless', 'in-place', 'rolling'] as const;

/** Until the job is downloaded (or failed); the final progress is the output. */
export async function waitDownloaded(s: Session, jobId: string): Promise<void> {
  const done = await waitForJob(s, jobId, ['downloaded', 'complete']);
  s.print(done, (p) => [...describeProgress(p), `Install it with: gantry install ${p.job_id}`]);
}

/** check, updates, download, install, cancel, progress: the feed and the jobs. */
export function registerUpdates(program: Command, run: Run): void {
  program
    .command('check')
    .description('ask the update feed for new releases')
    .option('--background', 'return at once; the check runs on the server')
    .option('--force', 'check even if a check ran recently')
    .action((o: { background?: boolean; force?: boolean }, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.updates.check.mutate({ background: !!o.background, force: !!o.force });
        s.print(res, (r) =>
          r.status === 'completed'
            ? [`Checked ${r.server}: ${r.total_available ?? 0} update(s) available (gantry updates)`]
            : [`Check ${r.check_id} running in the background against ${r.server}`],
        );
      }),
    );

  program
    .command('updates')
    .description('list the updates the last check found')
    .action((_o: unknown, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.updates.list.query();
        s.print(res, (r) => [
          r.server === null
            ? 'Feed: none configured (GANTRY_FEED_URL + GANTRY_FEED_ROOT, or a configuration ZIP)'
            : `Feed: ${r.server}`,
          ...(r.updates.length === 0
            ? ['No updates available (run: gantry check)']
            : table(
                ['ID', 'VERSION', 'TYPE', 'SEVERITY', 'SIZE', 'RELEASED', 'SIGNATURE', 'COMPATIBLE'],
                r.updates.map((u) => [
                  u.id,
                  u.version,
                  u.type,
                  u.severity,
                  u.size,
                  u.released,
                  u.signature,
                  u.compatible ? 'yes' : 'no',
                ]),
              )),
        ]);
      }),
    );

  program
    .command('download')
    .description('download and verify an update into the inactive slot')
    .argument('<update-id>', 'update id from `gantry updates`, e.g. update-001')
    .addOption(new Option('--target <slot>', 'slot to write (default: the inactive one)').choices(SLOTS))
    .option('--wait', 'follow the job until it is downloaded (exit non-zero if it fails)')
    .action((updateId: string, o: { target?: 'A' | 'B'; wait?: boolean }, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.updates.download.mutate({ update_id: updateId, target_partition: o.target });
        if (o.wait) return waitDownloaded(s, res.job_id);
        s.print(res, (r) => [
          `Downloading ${r.update.id} ${r.update.version} (${r.update.size}) to slot ${r.target_partition}: job ${r.job_id}`,
          `Follow it with: gantry progress ${r.job_id}`,
        ]);
      }),
    );

  program
    .command('install')
    .description('install a downloaded update (and reboot into it)')
    .argument('<job-id>', 'job id from `gantry download`')
    .addOption(new Option('--strategy <strategy>', 'default: the gateway setting').choices(STRATEGIES))
    .option('--no-reboot', 'install only; boot the new slot at the next reboot')
    .option(
      '--wait',
      'follow the job until it completes, or with --no-reboot until it is installed (exit non-zero if it fails)',
    )
    .action(
      (
        jobId: string,
        o: { strategy?: (typeof STRATEGIES)[number]; reboot: boolean; wait?: boolean },
        cmd: Command,
      ) =>
        run(cmd, async (s) => {
          const res = await s.api.updates.install.mutate({
            job_id: jobId,
            strategy: o.strategy,
            reboot_after: o.reboot,
          });
          if (o.wait) {
            // Without a reboot the job waits for one (status `installed`): nothing more to follow.
            const done = await waitForJob(s, res.job_id, o.reboot ? ['complete'] : ['installed', 'complete']);
            return s.print(done, describeProgress);
          }
          s.print(res, (r) => [
            `Installing ${r.job_id} (${r.strategy}) on slot ${r.target_partition}; next boot from ${r.next_boot_partition}${r.reboot_after ? '' : ' (no reboot)'}`,
            `Follow it with: gantry progress ${r.job_id}`,
          ]);
        }),
    );

  program
    .command('cancel')
    .description('cancel a download or a pending install')
    .argument('<job-id>')
    .option('--reason <text>', 'recorded in the audit trail')
    .action((jobId: string, o: { reason?: string }, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.updates.cancel.mutate({ job_id: jobId, reason: o.reason });
        s.print(res, (r) => [`Cancelled ${r.job_id} at ${r.progress_at_cancel}%`]);
      }),
    );

  program
    .command('progress')
    .description("show a job's state and progress")
    .argument('<job-id>')
    .action((jobId: string, _o: unknown, cmd: Command) =>
      run(cmd, async (s) => s.print(await s.api.updates.progress.query({ job_id: jobId }), describeProgress)),
    );
}
