import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  seconds: number;
}

/** Runs a command to completion (stdin closed), timing it; never rejects on a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-16_384)));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          stderr += `\n[bench] killed after ${opts.timeoutMs} ms`;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

export interface MeasuredResult extends CommandResult {
  /** Largest resident set of the processes the script ran (GNU time's %M), MiB; null without GNU time. */
  peakRssMiB: number | null;
  /** User + system CPU seconds of the script and everything it ran. */
  cpuSeconds: number | null;
}

const GNU_TIME = '/usr/bin/time';

/**
 * Runs a bash script under GNU time (Debian package `time`): wall seconds, the peak RSS of the
 * largest process it ran (the rusage of waited-for children: a pipeline reports its biggest
 * member) and the CPU time of all of them. Without GNU time the script still runs, unmeasured.
 */
export async function runMeasured(
  script: string,
  args: string[] = [],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<MeasuredResult> {
  const bashArgs = ['-c', `set -eo pipefail; ${script}`, 'bench', ...args];
  if (!fs.existsSync(GNU_TIME)) {
    const r = await runCommand('bash', bashArgs, opts);
    return { ...r, peakRssMiB: null, cpuSeconds: null };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-time-'));
  const out = path.join(dir, 'time');
  try {
    const r = await runCommand(GNU_TIME, ['-o', out, '-f', '%M %U %S', 'bash', ...bashArgs], opts);
    const last = fs.readFileSync(out, 'utf8').trim().split('\n').pop() ?? '';
    const [kib, user, sys] = last.split(' ').map(Number);
    const ok = [kib, user, sys].every((n) => Number.isFinite(n));
    return {
      ...r,
      peakRssMiB: ok ? Math.round((kib! / 1024) * 10) / 10 : null,
      cpuSeconds: ok ? Math.round((user! + sys!) * 100) / 100 : null,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
