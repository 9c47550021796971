import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import { StringDecoder } from 'node:string_decoder';
import type { TerminalLine } from './zip-manifests.js';

/**
 * Plugin hooks: child processes run without a shell, one process group each, with a hard
 * deadline. And the hub their output (and every operation step) is streamed through to the
 * `/ota-update` terminal, one instance per running app.
 */

export class TerminalHub {
  private readonly emitter = new EventEmitter();

  constructor() {
    // One listener per connected terminal; the default cap of 10 would warn on a busy control room.
    this.emitter.setMaxListeners(0);
  }

  publish(gatewayId: string, line: TerminalLine): void {
    this.emitter.emit(gatewayId, line);
  }

  subscribe(gatewayId: string, listener: (line: TerminalLine) => void): () => void {
    this.emitter.on(gatewayId, listener);
    return () => this.emitter.off(gatewayId, listener);
  }
}

/** Longer lines are cut: a hook printing a binary blob must not produce one multi-megabyte event. */
export const MAX_LINE_CHARS = 4096;

/** Splits a byte stream into lines, across chunk boundaries and multi-byte characters. */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';

  push(chunk: Buffer): string[] {
    return this.split(this.rest + this.decoder.write(chunk), false);
  }

  end(): string[] {
    return this.split(this.rest + this.decoder.end(), true);
  }

  private split(text: string, final: boolean): string[] {
    const parts = text.split('\n');
    this.rest = final ? '' : (parts.pop() ?? '');
    if (final && parts[parts.length - 1] === '') parts.pop();
    // A partial line that keeps growing is flushed at the cap rather than buffered without bound.
    while (this.rest.length > MAX_LINE_CHARS) {
      parts.push(this.rest.slice(0, MAX_LINE_CHARS));
      this.rest = this.rest.slice(MAX_LINE_CHARS);
    }
    return parts.map((l) => {
      const line = l.endsWith('\r') ? l.slice(0, -1) : l;
      return line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line;
    });
  }
}

/**
 * The environment a hook starts from: only what a script needs to run, never the server's own
 * environment (which holds GANTRY_JWT_SECRET and GANTRY_ADMIN_PASSWORD).
 */
export function hookBaseEnv(parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {
    PATH: parent.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  };
  for (const key of ['LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const) {
    const value = parent[key];
    if (value) env[key] = value;
  }
  return env;
}

export interface HookRun {
  plugin: string;
  /** Absolute path of the executable. */
  path: string;
  cwd: string;
  timeoutSeconds: number;
  env: Record<string, string>;
  /** Arguments (a component handler's verb); none for hooks. */
  args?: string[];
  /** A file streamed to the process's stdin (a component handler's payload); else stdin is closed. */
  stdinFile?: string;
}

export interface HookRunOptions {
  signal?: AbortSignal;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** After the hook exits, how long a grandchild may keep its output pipes open. */
  pipeGraceMs?: number;
  /** Lines reported per stream and run; the rest is dropped with one notice. */
  maxLines?: number;
  onLine: (stream: 'stdout' | 'stderr', line: string) => void;
}

export interface HookOutcome {
  ok: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /** Why it failed, for people: "exited with code 1", "timed out after 30 s", … */
  reason: string;
}

/**
 * Runs one hook to its end or its deadline. Never rejects: a hook that cannot start, fails, hangs
 * or is aborted is an outcome. The hook leads its own process group so the deadline reaches what it
 * started too (a `sleep` under a shell script would otherwise keep the pipes, and us, waiting).
 */
export function runHook(run: HookRun, opts: HookRunOptions): Promise<HookOutcome> {
  const maxLines = opts.maxLines ?? 5000;
  const pipeGraceMs = opts.pipeGraceMs ?? 1000;
  return new Promise<HookOutcome>((resolve) => {
    let timedOut = false;
    let aborted = false;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];

    const child = spawn(run.path, run.args ?? [], {
      cwd: run.cwd,
      env: run.env,
      shell: false,
      detached: true,
      stdio: [run.stdinFile ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    if (run.stdinFile && child.stdin) {
      const input = fs.createReadStream(run.stdinFile);
      // A handler that exits without reading all of its payload closes the pipe: not our error.
      child.stdin.on('error', () => input.destroy());
      input.on('error', () => child.stdin?.destroy());
      input.pipe(child.stdin);
    }

    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        try {
          child.kill(sig);
        } catch {
          /* already gone */
        }
      }
    };
    const stop = () => {
      killGroup('SIGTERM');
      const t = setTimeout(() => killGroup('SIGKILL'), opts.killGraceMs);
      t.unref();
      timers.push(t);
    };

    const deadline = setTimeout(() => {
      timedOut = true;
      stop();
    }, run.timeoutSeconds * 1000);
    timers.push(deadline);

    const onAbort = () => {
      aborted = true;
      stop();
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (
      outcome: Omit<HookOutcome, 'ok' | 'timedOut' | 'aborted' | 'reason'>,
      startError?: Error,
    ) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      opts.signal?.removeEventListener('abort', onAbort);
      const ok = !startError && !timedOut && !aborted && outcome.exitCode === 0;
      const reason = startError
        ? `could not start: ${(startError as NodeJS.ErrnoException).code ?? startError.message}`
        : timedOut
          ? `timed out after ${run.timeoutSeconds} s`
          : aborted
            ? 'aborted'
            : outcome.signal
              ? `killed by ${outcome.signal}`
              : outcome.exitCode === 0
                ? 'ok'
                : `exited with code ${outcome.exitCode}`;
      resolve({ ...outcome, ok, timedOut, aborted, reason });
    };

    const pipes = (['stdout', 'stderr'] as const).map((stream) => {
      const source = child[stream]!;
      const splitter = new LineSplitter();
      let lines = 0;
      const emit = (batch: string[]) => {
        for (const line of batch) {
          lines++;
          if (lines <= maxLines) opts.onLine(stream, line);
          else if (lines === maxLines + 1)
            opts.onLine(stream, `[gantry] ${stream} truncated after ${maxLines} lines`);
        }
      };
      source.on('data', (chunk: Buffer) => emit(splitter.push(chunk)));
      return new Promise<void>((done) => {
        source.once('close', () => {
          emit(splitter.end());
          done();
        });
      });
    });

    child.once('error', (err) => {
      // Spawning failed (ENOENT, EACCES, ENOEXEC): there is no process to wait for.
      if (child.pid === undefined) finish({ exitCode: null, signal: null }, err);
    });

    child.once('exit', (exitCode, signal) => {
      // Done once both pipes have drained, or after a grace if something the hook left behind
      // still holds them open (our ends are then destroyed: the job must not hang on it).
      const grace = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish({ exitCode, signal });
      }, pipeGraceMs);
      timers.push(grace);
      void Promise.all(pipes).then(() => finish({ exitCode, signal }));
    });
  });
}
