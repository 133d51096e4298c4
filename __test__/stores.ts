import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { Client } from 'pg';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A PostgreSQL schema of its own for one test file; fails loudly when PostgreSQL is missing. */
export async function postgresStore(): Promise<{ url: string; schema: string; drop: () => Promise<void> }> {
  const schema = `eb_jest_${randomUUID().replace(/-/g, '')}`;
  const client = new Client({ connectionString: TEST_DATABASE_URL });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `PostgreSQL is required for these tests and is not reachable at ${TEST_DATABASE_URL}: ${String(err)}\n` +
        'Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or set TEST_DATABASE_URL.',
    );
  }
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.end();
  const sep = TEST_DATABASE_URL.includes('?') ? '&' : '?';
  return {
    url: `${TEST_DATABASE_URL}${sep}options[search_path]=${schema}`,
    schema,
    drop: async () => {
      const admin = new Client({ connectionString: TEST_DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** A fresh SQLite file in a temporary directory. */
export function sqliteStore(): { url: string; drop: () => Promise<void> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-eb-'));
  return {
    url: `sqlite://${path.join(dir, 'events.db')}`,
    drop: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
