import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import * as schema from './schema.js';

export type GantryDb = BetterSQLite3Database<typeof schema> & { $client: Database.Database };

/** drizzle/migrations, found from the source tree or from dist/drizzle (built). */
function migrationsFolder(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const candidate of [
    path.join(here, 'migrations'),
    path.join(here, '..', '..', 'drizzle', 'migrations'),
  ]) {
    if (fs.existsSync(path.join(candidate, 'meta', '_journal.json'))) return candidate;
  }
  throw new Error(`drizzle migrations not found near ${here}`);
}

/**
 * Opens (creating if needed) the SQLite store and applies pending migrations before anything else
 * touches it. WAL + synchronous=FULL: a committed transaction survives power loss, which is the
 * whole point of keeping job state here (Mender keeps its state in a DB for the same reason).
 */
export function openDatabase(file: string): GantryDb {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = drizzle({ client: sqlite, schema });
  migrate(db, { migrationsFolder: migrationsFolder() });
  return db;
}
