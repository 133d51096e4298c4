// PostgreSQL helpers the benchmarks share: a schema of their own (dropped after) and the COPY
// baseline (the bulk-load ceiling for rows of the bus's shape).
const { randomUUID } = require('node:crypto');
const { pipeline } = require('node:stream/promises');
const { Readable } = require('node:stream');
const { Client } = require('pg');
const { from: copyFrom } = require('pg-copy-streams');

const DB = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** Runs `fn(url, schema)` with `url` pointing at a fresh schema; drops it afterwards. */
async function withSchema(fn) {
  const schema = `eb_bench_${randomUUID().replace(/-/g, '')}`;
  const admin = new Client({ connectionString: DB });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const sep = DB.includes('?') ? '&' : '?';
  try {
    return await fn(`${DB}${sep}options[search_path]=${schema}`, schema);
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
}

/**
 * One COPY of `count` rows into `event_bus_events` over `client`; `row(i)` gives
 * `[id, type, payloadJson, timestamp, projectId, tenantId, userId]`. Resolves once committed.
 */
async function copyEvents(client, count, row) {
  const rows = function* () {
    for (let i = 0; i < count; i++) {
      const [id, type, payload, ts, p, t, u] = row(i);
      // COPY text format: a backslash in the JSON must be doubled.
      yield `${id}\t${type}\t${payload.replace(/\\/g, '\\\\')}\t${ts.toISOString()}\t${p}\t${t}\t${u}\n`;
    }
  };
  const stream = client.query(copyFrom(`COPY event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id) FROM STDIN`));
  await pipeline(Readable.from(rows()), stream);
}

module.exports = { DB, withSchema, copyEvents };
