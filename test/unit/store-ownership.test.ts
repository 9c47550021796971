import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * One writer per table: jobs and their history go through services/jobs.ts (JobStore), statechart
 * snapshots through services/actor-snapshots.ts (ActorSnapshotStore). ESLint's
 * no-restricted-imports keeps the drizzle table objects to those files; this keeps raw SQL out.
 */

const ROOT = path.join(import.meta.dirname, '..', '..');
const OWNERS = new Set(['services/jobs.ts', 'services/actor-snapshots.ts']);
const SKIP = new Set(['node_modules', 'dist', 'data', 'test', 'test-artifacts', '.git', 'migrations']);
const TABLES = ['jobs', 'job_transitions', 'actor_snapshots'];
const T = `[\`"']?(${TABLES.join('|')})[\`"']?`;
const WRITE = new RegExp(
  [
    `\\b(insert|replace)\\s+(or\\s+\\w+\\s+)?into\\s+${T}`,
    `\\bupdate\\s+(or\\s+\\w+\\s+)?${T}\\s+set\\b`,
    `\\bdelete\\s+from\\s+${T}`,
    `\\b(drop|alter)\\s+table\\s+(if\\s+exists\\s+)?${T}`,
  ].join('|'),
  'i',
);
const TABLE_IMPORT =
  /import\s*{[^}]*\b(jobs|jobTransitions|actorSnapshots)\b[^}]*}\s*from\s*'[^']*drizzle\/schema(\.js)?'/;

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) sourceFiles(full, out);
    else if (/\.(ts|js|mjs)$/.test(entry.name)) out.push(path.relative(ROOT, full));
  }
  return out;
}

describe('store ownership', () => {
  it('should find the patterns it looks for (so that finding none means something)', () => {
    expect(WRITE.test('db.prepare(`UPDATE jobs SET state = ?`)')).toBe(true);
    expect(WRITE.test("INSERT INTO `actor_snapshots` (machine) VALUES ('x')")).toBe(true);
    expect(WRITE.test('delete from job_transitions where job_id = ?')).toBe(true);
    expect(WRITE.test('update(jobsTable)')).toBe(false);
    expect(WRITE.test('// update jobs (the update service) and ZIP operations')).toBe(false);
    expect(TABLE_IMPORT.test("import { jobs as jobsTable, logs } from '../drizzle/schema.js';")).toBe(true);
  });

  it('should leave every write of jobs, job_transitions and actor_snapshots to their stores', () => {
    const files = sourceFiles(ROOT);
    expect(files).toContain('services/jobs.ts');
    const offenders = files
      .filter((f) => !OWNERS.has(f) && !f.startsWith('drizzle/'))
      .filter((f) => {
        const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
        return WRITE.test(text) || TABLE_IMPORT.test(text);
      });
    expect(offenders).toEqual([]);
  });
});

/**
 * The users, settings and gateways tables are kept in memory by their one writer
 * (services/users.ts, services/settings.ts, services/gateways.ts: a revoked session refused from
 * the next request, /status without a query per request), which is only right while nothing else
 * writes them.
 */
describe('store ownership: users, settings and gateways', () => {
  /** drizzle's `.insert(users)` and the like, or raw SQL writing the table. */
  const writes = (table: string) =>
    new RegExp(
      [
        `\\.(insert|update|delete)\\(\\s*${table}\\s*\\)`,
        `\\binsert\\s+(or\\s+\\w+\\s+)?into\\s+[\`"']?${table}\\b`,
        `\\bupdate\\s+(or\\s+\\w+\\s+)?[\`"']?${table}[\`"']?\\s+set\\b`,
        `\\bdelete\\s+from\\s+[\`"']?${table}\\b`,
      ].join('|'),
      'i',
    );
  const OWNED: Record<string, { owner: string; write: RegExp }> = {
    users: { owner: 'services/users.ts', write: writes('users') },
    settings: { owner: 'services/settings.ts', write: writes('settings') },
    gateways: { owner: 'services/gateways.ts', write: writes('gateways') },
  };

  it('should find the writes it looks for', () => {
    expect(OWNED.users!.write.test('db.update(users).set({ tokenVersion: 2 })')).toBe(true);
    expect(OWNED.users!.write.test('DELETE FROM users WHERE id = 1')).toBe(true);
    expect(OWNED.settings!.write.test('this.db.insert(settings).values(row)')).toBe(true);
    expect(OWNED.users!.write.test('db.select().from(users)')).toBe(false);
    expect(OWNED.settings!.write.test('// update settings, then show them')).toBe(false);
  });

  it('should leave every write of users, settings and gateways to their services', () => {
    const files = sourceFiles(ROOT).filter((f) => !f.startsWith('drizzle/'));
    for (const [table, { owner, write }] of Object.entries(OWNED)) {
      expect(files).toContain(owner);
      const offenders = files.filter(
        (f) => f !== owner && write.test(fs.readFileSync(path.join(ROOT, f), 'utf8')),
      );
      expect(offenders, table).toEqual([]);
    }
  });
});
