import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

/**
 * One QEMU x86_64 machine under TCG with the 32-bit qemu-x86 U-Boot as its firmware, its serial
 * console on our stdin/stdout (logged to a file with the seconds since start), user networking with
 * one host port forwarded to the guest's Gantry. The guest reboots inside the same QEMU process, so
 * boots are told apart by U-Boot's banner on the console.
 */

export interface QemuOptions {
  disk: string;
  consoleLog: string;
  /** Host loopback port forwarded to the guest's port 8080. */
  apiPort: number;
  memoryMiB?: number;
  cpus?: number;
}

export interface BootRecord {
  /** Seconds since QEMU started. */
  at: number;
  slot: string | null;
  /** The application slot U-Boot passed on (app_slot). */
  app: string | null;
  trial: string | null;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\r/g;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export class Qemu {
  private proc: ChildProcess | null = null;
  private text = '';
  private partial = '';
  private readonly started = Date.now();
  private readonly log: fs.WriteStream;
  private readonly waiters = new Set<() => void>();
  exited: { code: number | null; signal: string | null } | null = null;
  readonly boots: BootRecord[] = [];

  constructor(private readonly opts: QemuOptions) {
    this.log = fs.createWriteStream(opts.consoleLog);
  }

  /** Seconds since QEMU was started. */
  elapsed(): number {
    return (Date.now() - this.started) / 1000;
  }

  start(): void {
    const args = [
      '-machine', 'pc',
      '-accel', 'tcg,thread=multi',
      '-smp', String(this.opts.cpus ?? 2),
      '-m', String(this.opts.memoryMiB ?? 1024),
      '-bios', '/usr/lib/u-boot/qemu-x86/u-boot.rom',
      '-drive', `file=${this.opts.disk},if=virtio,format=raw,cache=unsafe`,
      '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${this.opts.apiPort}-:8080`,
      '-device', 'virtio-net-pci,netdev=n0',
      '-display', 'none',
      '-serial', 'stdio',
      '-monitor', 'none',
    ]; // prettier-ignore
    const proc = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout!.on('data', (chunk: Buffer) => this.onOutput(chunk.toString('utf8')));
    proc.stderr!.on('data', (chunk: Buffer) => this.onOutput(`[qemu stderr] ${chunk.toString('utf8')}`));
    proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.onOutput(`\n[qemu exited: code ${code} signal ${signal}]\n`);
    });
  }

  private onOutput(raw: string): void {
    const clean = raw.replace(ANSI, '');
    this.text += clean;
    // Log line by line with a time stamp, so boot phases can be timed from the log afterwards.
    const lines = (this.partial + clean).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      this.log.write(`[${this.elapsed().toFixed(1).padStart(7)}] ${line}\n`);
      if (/^U-Boot 20\d\d/.test(line))
        this.boots.push({ at: this.elapsed(), slot: null, app: null, trial: null });
      const booting = /gantry-vm: booting slot ([AB])(?:.*, app slot ([AB]))?/.exec(line);
      const last = this.boots[this.boots.length - 1];
      if (booting && last) {
        last.slot = booting[1]!;
        last.app = booting[2] ?? null;
      }
      const trial = /gantry-vm: (slot [AB] on trial, boot \d+ of \d+)/.exec(line);
      if (trial && last) last.trial = trial[1]!;
    }
    for (const w of [...this.waiters]) w();
  }

  /** Offset into the console text: pass it to expect() to only look at what comes after. */
  mark(): number {
    return this.text.length;
  }

  /** Console text since `from`. */
  since(from: number): string {
    return this.text.slice(from);
  }

  tail(chars = 4000): string {
    return this.text.slice(-chars);
  }

  /** Waits until `pattern` appears on the console after `from`; returns the match. */
  expect(
    pattern: RegExp,
    opts: { from: number; timeoutMs: number; what?: string },
  ): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(this.text.slice(opts.from));
        if (m) {
          done();
          resolve(m);
        } else if (this.exited) {
          done();
          reject(new Error(`QEMU exited while waiting for ${opts.what ?? pattern}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `timed out after ${opts.timeoutMs / 1000} s waiting for ${opts.what ?? pattern} on the console`,
          ),
        );
      }, opts.timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Types a line on the serial console (the guest logs root in on ttyS0). */
  type(line: string): void {
    this.proc?.stdin?.write(`${line}\n`);
  }

  /**
   * Runs a shell command on the serial console and returns its output. The markers are split in
   * the typed text, so the console's echo of the command line never matches them.
   */
  async run(cmd: string, timeoutMs = 60_000): Promise<string> {
    const id = Math.random().toString(36).slice(2, 8);
    const from = this.mark();
    this.type(`echo "@@S""${id}"; ${cmd}; echo "@@E""${id} rc=$?"`);
    const m = await this.expect(new RegExp(`@@S${id}\\n([\\s\\S]*?)@@E${id} rc=(\\d+)`), {
      from,
      timeoutMs,
      what: `the output of "${cmd}"`,
    });
    return `${m[1]!.trimEnd()}${m[2] === '0' ? '' : `\n(exit ${m[2]})`}`;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc && !this.exited) {
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    if (this.partial) this.log.write(`[${this.elapsed().toFixed(1).padStart(7)}] ${this.partial}\n`);
    await new Promise<void>((resolve) => this.log.end(() => resolve()));
  }
}
