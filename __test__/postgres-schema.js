// A PostgreSQL schema of its own for a test run, shared by the jest suites (stores.ts) and the
// packed-package contract (contract/run.js); fails loudly, saying how to start PostgreSQL.
const { randomUUID } = require('node:crypto');
const { Client } = require('pg');

const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function postgresSchema(prefix) {
  const schema = `${prefix}_${randomUUID().replace(/-/g, '')}`;
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

module.exports = { TEST_DATABASE_URL, postgresSchema };
