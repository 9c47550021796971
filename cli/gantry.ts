#!/usr/bin/env node
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { describeError, openSession, type CliIo, type GlobalOptions, type Run } from './gantry/session.js';
import { registerSimulator } from './gantry/simulator.js';
import { registerSystem } from './gantry/system.js';
import { registerUpdates } from './gantry/updates.js';
import { registerUpload } from './gantry/upload.js';

/**
 * `gantry`: the command-line client of a Gantry server, over the typed tRPC client (HTTP for
 * queries and mutations, WebSocket for live events) plus the REST upload route for files.
 * Every failure ends with `gantry: CODE: message` on stderr and a non-zero exit code.
 */

const defaultIo: CliIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
  interactive: Boolean(process.stderr.isTTY),
};

export function createProgram(io: CliIo = defaultIo): Command {
  const program = new Command('gantry')
    .description('Command-line client of a Gantry OTA update server')
    .addOption(
      new Option('--server <url>', 'Gantry server').env('GANTRY_SERVER').default('http://127.0.0.1:8080'),
    )
    .addOption(new Option('--gateway <id>', 'gateway to act on').env('GANTRY_GATEWAY').default('GW-3920A9'))
    .addOption(
      new Option('--token <token>', 'session token (default: the one `gantry login` saved)').env(
        'GANTRY_TOKEN',
      ),
    )
    .option('--json', 'machine-readable output (JSON on stdout; errors as JSON on stderr)')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .showHelpAfterError();

  const run: Run = async (cmd, fn) => {
    const session = openSession(io, cmd.optsWithGlobals<GlobalOptions>());
    try {
      await fn(session);
    } finally {
      session.close();
    }
  };
  registerSystem(program, run);
  registerUpdates(program, run);
  registerUpload(program, run);
  registerSimulator(program, run);
  return program;
}

/** Runs the CLI and resolves to its exit code (never throws). */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    // Commander already printed its message (usage errors); help exits 0.
    if (err instanceof CommanderError) return err.exitCode;
    const opts = program.opts<GlobalOptions>();
    const { code, message } = describeError(err, opts.server);
    const hint =
      code.startsWith('AUTH_') && code !== 'AUTH_INVALID_CREDENTIALS' ? ' (run: gantry login)' : '';
    io.err(opts.json ? JSON.stringify({ error: { code, message } }) : `gantry: ${code}: ${message}${hint}`);
    return 1;
  }
}

// Through npm's bin symlink argv[1] is the link, so compare real paths.
const entry = process.argv[1];
const invokedDirectly = (() => {
  try {
    return entry !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(entry)).href;
  } catch {
    return false;
  }
})();
if (invokedDirectly) {
  process.exitCode = await runCli(process.argv.slice(2));
}
