import { Argument, type Command } from 'commander';
import type { Run } from './session.js';

/**
 * The simulated gateway's controls (admin; a real gateway answers 404): how a demo shows what a
 * real board does on its own, e.g. a new image that does not boot and the rollback that follows.
 */
export function registerSimulator(program: Command, run: Run): void {
  const simulator = program
    .command('simulator')
    .description('controls of a simulated gateway (admin): failing boots or self-tests, power cycle');

  simulator
    .command('fail-boots')
    .description(
      'make the next boots of a slot fail; failing all its trial boots (default: rollback_retries) brings the other slot back',
    )
    .addArgument(new Argument('<slot>', 'slot whose boots fail').choices(['A', 'B']))
    .argument('[count]', 'boots that fail (0 clears; default: the rollback_retries setting)', (v) =>
      Number(v),
    )
    .action((slot: 'A' | 'B', count: number | undefined, _o: unknown, cmd: Command) =>
      run(cmd, async (s) => {
        const n = count ?? (await s.api.system.status.query()).partitions.rollback_retries;
        const res = await s.api.simulator.bootFailures.mutate({ slot, count: n });
        s.print(res, (r) => [
          r.count === 0
            ? `Boots of slot ${r.slot} no longer fail`
            : `The next ${r.count} boot(s) of slot ${r.slot} will fail (install onto slot ${r.slot} to watch the rollback)`,
        ]);
      }),
    );

  simulator
    .command('fail-self-test')
    .description(
      "make a slot's self-test (the health check after each trial boot) fail: an image that boots but is broken",
    )
    .addArgument(new Argument('<slot>', 'slot whose self-test fails').choices(['A', 'B']))
    .option('--clear', 'the self-test of the slot passes again')
    .action((slot: 'A' | 'B', opts: { clear?: boolean }, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.simulator.selfTest.mutate({ slot, fails: !opts.clear });
        s.print(res, (r) => [
          r.fails
            ? `The self-test of slot ${r.slot} will fail (install onto slot ${r.slot} to watch the health check roll back)`
            : `The self-test of slot ${r.slot} passes again`,
        ]);
      }),
    );

  simulator
    .command('reboot')
    .description('power-cycle the simulated gateway (the bootloader runs: boot count, fallback)')
    .action((_o: unknown, cmd: Command) =>
      run(cmd, async (s) => {
        const res = await s.api.simulator.reboot.mutate();
        s.print(res, (r) => [`Booted slot ${r.booted_slot} (boot count ${r.boot_count})`]);
      }),
    );
}
