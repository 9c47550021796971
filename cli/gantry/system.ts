import { Option, type Command } from 'commander';
import type { GantryEvent } from '../../api/schemas/events.js';
import { CliFailure, saveToken, table, type Outputs, type Run, type Session } from './session.js';

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** Reads a password without echoing it (raw mode: the terminal would print every key otherwise). */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new CliFailure('ABORTED', 'login aborted'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text.replace(/\r?\n$/, '');
}

function slotRows(p: Outputs['system']['status']['partitions']): string[][] {
  return [p.active, p.inactive]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((slot) => [
      slot.id,
      slot.version ?? '-',
      slot.status,
      slot.size,
      slot.used,
      slot.booted ? 'yes' : 'no',
      slot.next_boot ? 'yes' : 'no',
    ]);
}

export function eventLine(e: GantryEvent): string {
  switch (e.type) {
    case 'log_entry':
      return `${e.timestamp} ${e.level.toUpperCase().padEnd(5)} ${e.source}: ${e.message}`;
    case 'system_status':
      return `${e.timestamp} STATUS ${e.status} (${e.current_operation}) ${e.progress}% cpu ${e.resources.cpu_usage}% mem ${e.resources.memory_usage}%`;
    case 'update_progress':
      return `${e.timestamp} JOB   ${e.job_id} ${e.status} (${e.current_operation}) ${e.progress}% ${e.speed} ETA ${e.eta}`;
    case 'safety_update':
      return `SAFETY ${e.constraint} ${e.status}${e.blocking ? ' (blocking)' : ''}${e.estimated_clear ? ` clears ${e.estimated_clear}` : ''}`;
  }
}

/** login, status, logs, watch: the session and what the gateway is doing. */
export function registerSystem(program: Command, run: Run): void {
  program
    .command('login')
    .description('log in and save the session token (password: --password, a prompt, or stdin)')
    .option('--user <name>', 'user name', 'admin')
    .option('--password <password>', 'visible in the process list: prefer the prompt or stdin')
    .action((o: { user: string; password?: string }, cmd: Command) =>
      run(cmd, async (s) => {
        const password =
          o.password ?? (process.stdin.isTTY ? await promptHidden('Password: ') : await readStdin());
        const res = await s.api.auth.login.mutate({ username: o.user, password });
        const file = saveToken(res.token);
        s.print({ user: res.user, expires_at: res.expires_at, token_file: file }, (r) => [
          `Logged in as ${r.user.username} (${r.user.role}) until ${r.expires_at}; token saved to ${r.token_file}`,
        ]);
      }),
    );

  program
    .command('status')
    .description('gateway, versions and A/B slots (which is booted, which boots next)')
    .action((_o: unknown, cmd: Command) =>
      run(cmd, async (s) => {
        const [status, monitor] = await Promise.all([
          s.api.system.status.query(),
          s.api.monitor.status.query(),
        ]);
        s.print({ ...status, monitor }, (r) => [
          `Gateway ${s.opts.gateway} (${r.gateway.model}): ${r.gateway.os_version}, kernel ${r.gateway.kernel}, up ${r.gateway.uptime}`,
          `System ${r.monitor.system_status} (${r.monitor.current_operation}); last OTA ${r.gateway.last_ota ?? 'never'}; last check ${r.monitor.last_update_check ?? 'never'}`,
          '',
          ...table(
            ['SLOT', 'VERSION', 'STATUS', 'SIZE', 'USED', 'BOOTED', 'NEXT BOOT'],
            slotRows(r.partitions),
          ),
          '',
          `Auto-rollback ${r.partitions.auto_rollback ? `on (${r.partitions.rollback_retries} retries)` : 'off'}`,
          ...((r.components ?? []).length > 1
            ? [
                '',
                ...table(
                  ['COMPONENT', 'VERSION', 'HANDLER', 'TARGET', 'SLOT', 'FLOOR', 'INSTALLING'],
                  (r.components ?? []).map((c) => [
                    c.name,
                    c.version ?? '-',
                    c.handler,
                    c.target,
                    c.slot ?? '-',
                    c.floor ?? '-',
                    c.pending_version ?? '-',
                  ]),
                ),
              ]
            : []),
        ]);
      }),
    );

  program
    .command('logs')
    .description("the gateway's recent log entries, oldest first")
    .option('--limit <n>', 'how many (1-500)', (v) => Number(v), 50)
    .addOption(new Option('--level <level>', 'only this level').choices(LEVELS))
    .action((o: { limit: number; level?: (typeof LEVELS)[number] }, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.monitor.logs.query({ limit: o.limit, level: o.level });
        s.print(res, (r) => [...r.logs].reverse().map((l) => eventLine({ type: 'log_entry', ...l })));
      }),
    );

  program
    .command('watch')
    .description("print the gateway's live events, one per line, until Ctrl-C (--json: one JSON per line)")
    .action((_o: unknown, cmd: Command) => run(cmd, (s) => watch(s)));
}

function watch(s: Session): Promise<void> {
  return new Promise((resolve, reject) => {
    let started = false;
    const sub = s.api.monitor.events.subscribe(undefined, {
      onStarted: () => {
        s.io.err(started ? 'Reconnected' : `Watching ${s.opts.gateway} (Ctrl-C to stop)`);
        started = true;
      },
      onData: (e) => s.io.out(s.opts.json ? JSON.stringify(e) : eventLine(e)),
      onError: (err) => stop(err),
    });
    // wsLink reconnects for ever: fine once watching (a server restart), not when it never connected.
    const offClose = s.onWsClose((code) => {
      if (started) s.io.err('Connection lost; reconnecting…');
      else
        stop(
          new CliFailure('CONNECTION_FAILED', `cannot open ${s.wsUrl}${code ? ` (close code ${code})` : ''}`),
        );
    });
    const onSignal = () => stop();
    const stop = (err?: unknown) => {
      process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      offClose();
      sub.unsubscribe();
      if (err) reject(err);
      else resolve();
    };
    process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  });
}
