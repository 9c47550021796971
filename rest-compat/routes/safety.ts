import type { z } from 'zod';
import {
  safetyOverrideInputSchema,
  safetyOverrideOutputSchema,
  safetyStatusOutputSchema,
  simulatorBootFailuresInputSchema,
  simulatorBootFailuresOutputSchema,
  simulatorRebootInputSchema,
  simulatorRebootOutputSchema,
  simulatorSelfTestInputSchema,
  simulatorSelfTestOutputSchema,
  simulatorSensorsInputSchema,
  simulatorSensorsOutputSchema,
} from '../../api/schemas/safety.js';
import { defineRoute } from '../route.js';

/** SECTION 6: Safety Management. */
export const safetyRoutes = [
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/safety',
    tag: 'Safety',
    summary: 'Safety constraints status (crane motion, ACS, UPS battery, network, system load)',
    role: 'viewer',
    output: safetyStatusOutputSchema,
    message: 'Safety status retrieved successfully',
    call: (caller) => caller.safety.status(),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/ota/safety/override',
    tag: 'Safety',
    summary:
      'Force override of safety constraints (PIN; 15 minutes or until the operation completes). ' +
      '5 wrong PINs lock overrides for 15 minutes (423 OTA_PIN_LOCKED).',
    role: 'admin',
    input: { from: 'body', schema: safetyOverrideInputSchema },
    output: safetyOverrideOutputSchema,
    message: (data: z.infer<typeof safetyOverrideOutputSchema>) =>
      data.override_enabled ? 'Safety override enabled' : 'Safety override disabled',
    call: (caller, input: z.infer<typeof safetyOverrideInputSchema>) => caller.safety.override(input),
  }),
];

/** Development controls of a simulated gateway (404 on a real one). Not part of the spec. */
export const simulatorRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/dev/simulator/sensors',
    tag: 'Simulator (development)',
    summary: 'Set simulated safety sensors (any subset); system_load null returns to the host load',
    role: 'admin',
    input: { from: 'body', schema: simulatorSensorsInputSchema },
    output: simulatorSensorsOutputSchema,
    message: 'Simulated sensors updated',
    call: (caller, input: z.infer<typeof simulatorSensorsInputSchema>) => caller.simulator.sensors(input),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/dev/simulator/boot-failures',
    tag: 'Simulator (development)',
    summary: 'Make the next boots of a slot fail (kernel panic / watchdog)',
    role: 'admin',
    input: { from: 'body', schema: simulatorBootFailuresInputSchema },
    output: simulatorBootFailuresOutputSchema,
    message: 'Simulated boot failures set',
    call: (caller, input: z.infer<typeof simulatorBootFailuresInputSchema>) =>
      caller.simulator.bootFailures(input),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/dev/simulator/self-test',
    tag: 'Simulator (development)',
    summary: "Make a slot's self-test (the health check after a trial boot) fail, or pass again",
    role: 'admin',
    input: { from: 'body', schema: simulatorSelfTestInputSchema },
    output: simulatorSelfTestOutputSchema,
    message: 'Simulated self-test set',
    call: (caller, input: z.infer<typeof simulatorSelfTestInputSchema>) => caller.simulator.selfTest(input),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/dev/simulator/reboot',
    tag: 'Simulator (development)',
    summary: 'Power-cycle the simulated gateway',
    role: 'admin',
    input: { from: 'body', schema: simulatorRebootInputSchema },
    output: simulatorRebootOutputSchema,
    message: 'Simulated gateway rebooted',
    call: (caller, input: z.infer<typeof simulatorRebootInputSchema>) => caller.simulator.reboot(input),
  }),
];
