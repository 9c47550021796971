import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { users } from '../../drizzle/schema.js';
import { ROLES, SAFETY_CONSTRAINTS, SLOT_IDS, UPDATE_STRATEGIES, WEEKDAYS } from '../../core/vocabulary.js';
import { maintenanceWindowSchema, settingsDocumentSchema } from '../../api/schemas/settings.js';
import { safetyOverrideInputSchema, simulatorBootFailuresInputSchema } from '../../api/schemas/safety.js';
import { userSchema } from '../../api/schemas/auth.js';

describe('core/vocabulary: one spelling of the domain words', () => {
  it('the users table stores its roles', () => {
    expect(users.role.enumValues).toEqual([...ROLES]);
  });

  it('the API payload schemas accept exactly its words', () => {
    const strategy = settingsDocumentSchema.shape.update_strategy;
    for (const s of UPDATE_STRATEGIES) expect(strategy.parse(s)).toBe(s);
    expect(strategy.safeParse('sideways').success).toBe(false);

    const day = maintenanceWindowSchema.shape.day;
    for (const d of WEEKDAYS) expect(day.parse(d)).toBe(d);
    expect(day.safeParse('someday').success).toBe(false);

    const override = (constraints: string[]) =>
      safetyOverrideInputSchema.safeParse({ enable: true, pin: '1234', reason: 'maintenance', constraints });
    expect(override([...SAFETY_CONSTRAINTS]).success).toBe(true);
    expect(override(['gravity']).success).toBe(false);
    for (const role of ROLES) expect(userSchema.unwrap().shape.role.parse(role)).toBe(role);
    expect(userSchema.unwrap().shape.role.safeParse('root').success).toBe(false);
    for (const slot of SLOT_IDS)
      expect(simulatorBootFailuresInputSchema.unwrap().shape.slot.parse(slot)).toBe(slot);
    expect(simulatorBootFailuresInputSchema.unwrap().shape.slot.safeParse('C').success).toBe(false);
  });

  it('imports nothing but its sibling vocabularies (no effects, no cycles)', () => {
    const source = readFileSync(new URL('../../core/vocabulary.ts', import.meta.url), 'utf8');
    const from = [...source.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
    expect(from.sort()).toEqual(['./errors.js', './job-kinds.js']);
  });
});
