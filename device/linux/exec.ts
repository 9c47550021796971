import { execFile } from 'node:child_process';

/**
 * Runs a tool without a shell, bounded in time, and turns every failure into an Error that carries
 * the tool's own words (its stderr, else its stdout): a bootloader tool that refuses to write must
 * never look like success, and the operator needs the reason it gave.
 */

export interface ToolOptions {
  /** Environment of the child (PATH decides which `fw_printenv` runs). Default: this process's. */
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Extra variables on top of `env`. */
  extraEnv?: Record<string, string>;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

const MAX_OUTPUT = 4 * 1024 * 1024;
const MAX_MESSAGE = 2000;

export class ToolError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    super(message);
    this.name = 'ToolError';
  }
}

function describe(file: string, args: readonly string[]): string {
  return [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function clip(text: string): string {
  const t = text.trim();
  return t.length > MAX_MESSAGE ? `${t.slice(0, MAX_MESSAGE)}…` : t;
}

export function runTool(file: string, args: readonly string[], opts: ToolOptions): Promise<ToolResult> {
  const command = describe(file, args);
  const env = { ...(opts.env ?? process.env), ...opts.extraEnv };
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env, timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
        const output = clip(stderr) || clip(stdout);
        let message: string;
        let exitCode: number | null = null;
        if (e.code === 'ENOENT') {
          message = `${command}: ${file} not found (not installed, or not on PATH)`;
        } else if (e.code === 'EACCES') {
          message = `${command}: ${file} is not executable`;
        } else if (e.killed || e.signal) {
          message = e.killed
            ? `${command} timed out after ${opts.timeoutMs} ms`
            : `${command} was killed by ${e.signal}`;
        } else if (typeof e.code === 'number') {
          exitCode = e.code;
          message = `${command} failed (exit ${e.code})`;
        } else {
          message = `${command} failed: ${e.message}`;
        }
        reject(new ToolError(output ? `${message}: ${output}` : message, command, exitCode, stderr, stdout));
      },
    );
  });
}
