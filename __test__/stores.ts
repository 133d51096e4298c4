import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { postgresSchema } from './postgres-schema';

export { TEST_DATABASE_URL } from './postgres-schema';

/** A PostgreSQL schema of its own for one test file; fails loudly when PostgreSQL is missing. */
export function postgresStore(): Promise<{ url: string; schema: string; drop: () => Promise<void> }> {
  return postgresSchema('eb_jest');
}

/** A fresh SQLite file in a temporary directory. */
export function sqliteStore(): { url: string; drop: () => Promise<void> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-eb-'));
  return {
    url: `sqlite://${path.join(dir, 'events.db')}`,
    drop: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
