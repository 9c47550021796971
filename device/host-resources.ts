import os from 'node:os';
import type { ResourceUsage } from './types.js';

interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { idle, total };
}

/**
 * Real CPU and memory use of the machine Gantry runs on. CPU is the busy share of all cores between
 * two samples; the first call waits a short window so it never reports a meaningless 0.
 */
export class HostResourceSampler {
  private last: CpuTimes | undefined;
  private lastAt = 0;
  private lastCpu = 0;

  constructor(private readonly minWindowMs = 100) {}

  async sample(): Promise<ResourceUsage> {
    if (!this.last) {
      this.last = cpuTimes();
      this.lastAt = Date.now();
      await new Promise((r) => setTimeout(r, this.minWindowMs));
    }
    // Within a short window the deltas are noise: keep the previous reading.
    if (Date.now() - this.lastAt >= this.minWindowMs) {
      const now = cpuTimes();
      const total = now.total - this.last.total;
      const idle = now.idle - this.last.idle;
      this.lastCpu = total > 0 ? Math.min(100, Math.max(0, (1 - idle / total) * 100)) : this.lastCpu;
      this.last = now;
      this.lastAt = Date.now();
    }
    const memoryUsage = (1 - os.freemem() / os.totalmem()) * 100;
    return { cpuUsage: round1(this.lastCpu), memoryUsage: round1(memoryUsage) };
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** 1-minute load average per CPU. */
export function hostLoadPerCpu(): number {
  return round1((os.loadavg()[0] ?? 0) / Math.max(1, os.cpus().length));
}
