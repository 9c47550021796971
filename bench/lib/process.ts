import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import readline from 'node:readline';

/** A loopback port that was free a moment ago (the child binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** One GET; resolves with the status, rejects on a connection error (not listening yet). */
function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
  });
}

export interface StartupSample {
  /** Spawn → first HTTP response, milliseconds. */
  ms: number;
  status: number;
}

/**
 * Spawns `command`, then asks `url` back-to-back until the first HTTP response: the time a
 * client waits from "start the service" to "served". Kills the child (SIGTERM) afterwards.
 */
export async function timeToFirstResponse(
  command: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; url: string; timeoutMs?: number },
): Promise<StartupSample> {
  const t0 = process.hrtime.bigint();
  const child = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  try {
    for (;;) {
      try {
        const status = await probe(opts.url);
        return { ms: Number(process.hrtime.bigint() - t0) / 1e6, status };
      } catch {
        if (exited !== null) throw new Error(`${command} ${args.join(' ')} exited with ${exited}: ${stderr}`);
        if (Date.now() > deadline)
          throw new Error(`${command} did not answer ${opts.url} in time: ${stderr}`);
        // Connection refused comes back in well under a millisecond: pause briefly between tries.
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } finally {
    await stopChild(child);
  }
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(timer);
}

/** Spawns a long-running helper that prints one JSON line when ready, and returns that line. */
export async function spawnReady<T>(
  command: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; timeoutMs?: number },
): Promise<{ child: ChildProcess; ready: T }> {
  const child = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout! });
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${command} not ready in time`)),
      opts.timeoutMs ?? 60_000,
    );
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code} before it was ready`)));
    lines.on('line', (line) => {
      if (!line.startsWith('{')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as T);
    });
  });
  return { child, ready };
}
