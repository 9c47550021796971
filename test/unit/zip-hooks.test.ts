import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  hookBaseEnv,
  LineSplitter,
  MAX_LINE_CHARS,
  runHook,
  type HookRunOptions,
} from '../../services/hooks.js';
import { makeTempDir } from '../helpers/temp.js';

let dir: string;
const leftovers: number[] = [];
beforeEach(() => {
  dir = makeTempDir('gantry-hooks-');
});
afterEach(() => {
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function script(body: string, mode = 0o755): string {
  const file = path.join(dir, `hook-${Math.random().toString(36).slice(2)}.sh`);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode });
  return file;
}

/** Gone, or a zombie waiting for init to reap it: either way no longer running. */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function run(file: string, timeoutSeconds: number, opts: Partial<HookRunOptions> = {}) {
  const lines: Array<[string, string]> = [];
  const outcome = runHook(
    { plugin: 'p', path: file, cwd: dir, timeoutSeconds, env: { ...hookBaseEnv(), GANTRY_X: 'y' } },
    { killGraceMs: 5000, onLine: (stream, line) => lines.push([stream, line]), ...opts },
  );
  return { outcome, lines };
}

describe('plugin hooks', () => {
  it('should run a hook without a shell, in its directory, and report its lines by stream', async () => {
    const { outcome, lines } = run(script('echo "one $GANTRY_X"; echo two >&2; pwd; printf "no newline"'), 5);
    const result = await outcome;
    expect(result).toMatchObject({ ok: true, exitCode: 0, timedOut: false, reason: 'ok' });
    expect(lines.filter(([s]) => s === 'stdout').map(([, l]) => l)).toEqual([
      'one y',
      fs.realpathSync(dir),
      'no newline',
    ]);
    expect(lines.filter(([s]) => s === 'stderr').map(([, l]) => l)).toEqual(['two']);
  });

  it('should report a hook that exits 1 as failed', async () => {
    const result = await run(script('echo broken >&2; exit 1'), 5).outcome;
    expect(result).toMatchObject({ ok: false, exitCode: 1, reason: 'exited with code 1' });
  });

  it('should kill a hook that never ends at its timeout, with what it started', async () => {
    const pidFile = path.join(dir, 'child.pid');
    const { outcome } = run(script(`sleep 300 & echo $! > ${pidFile}; wait`), 1);
    const result = await outcome;
    expect(result).toMatchObject({
      ok: false,
      timedOut: true,
      exitCode: null,
      reason: 'timed out after 1 s',
    });
    const child = Number(fs.readFileSync(pidFile, 'utf8'));
    leftovers.push(child);
    expect(running(child)).toBe(false);
  });

  it('should SIGKILL a hook that ignores SIGTERM after the grace period', async () => {
    const result = await run(script("trap '' TERM; while :; do sleep 1; done"), 1, { killGraceMs: 200 })
      .outcome;
    expect(result).toMatchObject({ ok: false, timedOut: true, signal: 'SIGKILL' });
  });

  it('should stop a hook when its signal aborts', async () => {
    const ac = new AbortController();
    let started!: () => void;
    const hasStarted = new Promise<void>((resolve) => (started = resolve));
    // Abort once the hook has visibly started: its own output is the cue, not a timer.
    const { outcome } = run(script('echo started; sleep 300'), 60, {
      signal: ac.signal,
      onLine: () => started(),
    });
    await hasStarted;
    ac.abort();
    expect(await outcome).toMatchObject({ ok: false, aborted: true, reason: 'aborted' });
  });

  it('should report a hook that cannot start', async () => {
    const result = await run(script('exit 0', 0o644), 5).outcome;
    expect(result).toMatchObject({ ok: false, exitCode: null, reason: 'could not start: EACCES' });
  });

  it('should not hang on a grandchild that keeps the output pipes open', async () => {
    const pidFile = path.join(dir, 'daemon.pid');
    const result = await run(script(`setsid sh -c 'echo $$ > ${pidFile}; exec sleep 300' & echo bye`), 10, {
      pipeGraceMs: 200,
    }).outcome;
    expect(result).toMatchObject({ ok: true, exitCode: 0 });
    leftovers.push(Number(fs.readFileSync(pidFile, 'utf8')));
  });

  it('should cap the lines of a chatty hook', async () => {
    const { outcome, lines } = run(script('i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); done'), 5, {
      maxLines: 10,
    });
    await outcome;
    expect(lines).toHaveLength(11);
    expect(lines[10]).toEqual(['stdout', '[gantry] stdout truncated after 10 lines']);
  });

  it('should never hand the server secrets to a hook', () => {
    const env = hookBaseEnv({
      PATH: '/bin',
      LANG: 'C.UTF-8',
      GANTRY_JWT_SECRET: 'x'.repeat(40),
      GANTRY_ADMIN_PASSWORD: 'secret',
    });
    expect(env).toEqual({ PATH: '/bin', LANG: 'C.UTF-8' });
  });
});

describe('LineSplitter', () => {
  it('should join lines across chunks and multi-byte characters, and drop CR', () => {
    const s = new LineSplitter();
    const euro = Buffer.from('€');
    expect(s.push(Buffer.concat([Buffer.from('a\r\nb'), euro.subarray(0, 1)]))).toEqual(['a']);
    expect(s.push(Buffer.concat([euro.subarray(1), Buffer.from('c\n')]))).toEqual(['b€c']);
    expect(s.end()).toEqual([]);
  });

  it('should flush an endless line at the cap', () => {
    const s = new LineSplitter();
    const out = s.push(Buffer.from('x'.repeat(MAX_LINE_CHARS * 2 + 5)));
    expect(out).toEqual(['x'.repeat(MAX_LINE_CHARS), 'x'.repeat(MAX_LINE_CHARS)]);
    expect(s.end()).toEqual(['xxxxx']);
  });
});
