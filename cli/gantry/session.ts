import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  createTRPCClient,
  createWSClient,
  httpLink,
  splitLink,
  TRPCClientError,
  wsLink,
  type TRPCClient,
} from '@trpc/client';
import type { inferRouterOutputs } from '@trpc/server';
import type { Command } from 'commander';
import WebSocket from 'ws';
import type { AppRouter } from '../../api/routers/_app.js';

/** What every command shares: output, the resolved global options and a typed client. */

export type Outputs = inferRouterOutputs<AppRouter>;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Whether to draw live progress bars (stderr is a terminal). */
  interactive: boolean;
}

export interface GlobalOptions {
  server: string;
  gateway: string;
  token?: string;
  json?: boolean;
}

/** A failure with a code, printed as `gantry: CODE: message` (or as JSON with --json). */
export class CliFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GANTRY_CONFIG_DIR) return env.GANTRY_CONFIG_DIR;
  return path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'gantry');
}

export function tokenFile(): string {
  return path.join(configDir(), 'token');
}

export function saveToken(token: string): string {
  const file = tokenFile();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  // `mode` only applies when the file is created: tighten a token file left by an older run too.
  fs.chmodSync(file, 0o600);
  return file;
}

function savedToken(): string | undefined {
  try {
    return fs.readFileSync(tokenFile(), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface Session {
  io: CliIo;
  opts: GlobalOptions;
  api: TRPCClient<AppRouter>;
  /** --token, $GANTRY_TOKEN or the one `login` saved (for the REST upload). */
  token: string | undefined;
  /** Called whenever the subscription WebSocket closes or fails to open (wsLink then reconnects). */
  onWsClose(listener: (code: number | undefined) => void): () => void;
  wsUrl: string;
  /** Prints `value` as JSON with --json, else the lines `text` makes. */
  print<T>(value: T, text: (value: T) => string[]): void;
  close(): void;
}

/** Runs a command's body with a session built from the command's global options, then closes it. */
export type Run = (cmd: Command, fn: (s: Session) => Promise<void>) => Promise<void>;

/** Queries and mutations over HTTP; subscriptions over one WebSocket, opened only when needed. */
export function openSession(io: CliIo, opts: GlobalOptions): Session {
  const token = opts.token ?? savedToken();
  const base = new URL(opts.server);
  const wsUrl = new URL('/api/trpc', base);
  wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
  const closeListeners = new Set<(code: number | undefined) => void>();
  const ws = createWSClient({
    url: wsUrl.href,
    // Node 20 has no global WebSocket; `ws` implements the same interface.
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    connectionParams: { ...(token ? { token } : {}), gatewayId: opts.gateway },
    lazy: { enabled: true, closeMs: 0 },
    onClose: (cause) => closeListeners.forEach((l) => l(cause?.code)),
  });
  const api = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: wsLink({ client: ws }),
        false: httpLink({
          url: new URL('/api/trpc', base).href,
          headers: () => ({
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            'x-gateway-id': opts.gateway,
          }),
        }),
      }),
    ],
  });
  return {
    io,
    opts,
    api,
    token,
    wsUrl: wsUrl.href,
    onWsClose(listener) {
      closeListeners.add(listener);
      return () => closeListeners.delete(listener);
    },
    print(value, text) {
      if (opts.json) io.out(JSON.stringify(value, null, 2));
      else for (const line of text(value)) io.out(line);
    },
    close: () => void ws.close(),
  };
}

/** The server's code and message from whatever a command threw. */
export function describeError(err: unknown, server: string): { code: string; message: string } {
  if (err instanceof CliFailure) return { code: err.code, message: err.message };
  if (err instanceof TRPCClientError) {
    const data = err.data as { gantryCode?: string | null; code?: string } | undefined;
    if (data) return { code: data.gantryCode ?? data.code ?? 'ERROR', message: err.message };
    // No error shape: the request never reached tRPC (connection refused, not a Gantry server).
    // fetch wraps the socket error ("fetch failed" → ECONNREFUSED): the innermost one says why.
    let cause: unknown = err;
    while ((cause as { cause?: unknown }).cause instanceof Error) cause = (cause as Error).cause;
    return { code: 'CONNECTION_FAILED', message: `cannot reach ${server}: ${(cause as Error).message}` };
  }
  const sys = err as NodeJS.ErrnoException;
  if (sys.code === 'ECONNREFUSED' || sys.code === 'ENOTFOUND') {
    return { code: 'CONNECTION_FAILED', message: `cannot reach ${server}: ${sys.message}` };
  }
  return { code: 'ERROR', message: (err as Error).message ?? String(err) };
}

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}
