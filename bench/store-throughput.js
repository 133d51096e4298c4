// Publish throughput and latency on the durable stores, side by side in the same run with plain
// node-postgres baselines writing the same rows into the same table definition:
//   - one INSERT per event (1 connection awaited; 16 connections concurrently)
//   - COPY of the rows (the bulk-load ceiling)
//   - 16 rows per INSERT, one statement at a time: the most 16 publishers that each await their
//     publish can get from PostgreSQL, whatever sits in between (16 events in flight, each needing
//     a commit; one commit of all 16 is the best case)
//   - the bus's own append statement (lock, doorbell, UNNEST) for one row, and the bus on the
//     memory store: the two parts of one awaited publish beside the raw INSERT
// and the bus on SQLite; then single awaited publishes of each event shape users send (small
// events with bus-generated ids, caller-chosen ids, caller ids with metadata, and a realistic mix:
// caller ids on half, a ~300-byte nested payload and metadata), each beside a raw INSERT of the same
// row, in rounds. Prints one JSON line per measurement. Run: npm run bench:store
// BENCH_ONLY=latency runs only the awaited-latency rounds (BENCH_ROUNDS, BENCH_LATENCY_N);
// BENCH_PACKAGE=/path/to/another/build compares a baseline build in the same session.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { Pool } = require('pg');
const { EventBus } = require(process.env.BENCH_PACKAGE || '@situs/event-bus');
const { DB, withSchema, copyEvents } = require('./lib/postgres');

const MIGRATION = fs.readFileSync(path.join(__dirname, '..', 'migrations', 'postgres', '0001_events.sql'), 'utf8');
const N_SINGLE = Number(process.env.BENCH_SINGLE || 2000);
const N_CONCURRENT = Number(process.env.BENCH_CONCURRENT || 20000);
const N_MANY = Number(process.env.BENCH_MANY || 100000);
const PUBLISHERS = 16;
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const N_LATENCY = Number(process.env.BENCH_LATENCY_N || 500);

const event = (i) => ({
  type: 'project.updated',
  payload: { id: i, name: `item-${i}`, tags: ['a', 'b'], nested: { ok: true } },
  projectId: `p${i % 100}`,
  tenantId: `t${i % 10}`,
  userId: `u${i % 1000}`,
});

const withId = (e) => ({ id: randomUUID(), ...e });
const withMetadata = (e, i) => ({
  ...e,
  metadata: { correlationId: `c0ffee00-0000-4000-8000-${String(i).padStart(12, '0')}`, source: 'billing-service', schemaVersion: 3 },
});
// What applications publish: a ~300-byte nested payload, metadata, and (on half of them, as
// idempotent retries, outbox relays and CQRS events do) an id the caller chose.
const realistic = (i) => {
  const e = {
    type: 'order.line_item_added',
    payload: {
      orderId: `ord_${100000 + i}`,
      customer: { id: `cus_${i % 5000}`, email: `customer${i % 5000}@example.com`, tier: 'gold' },
      line: { sku: `SKU-${i % 900}`, name: 'Stainless steel water bottle, 750 ml', quantity: 1 + (i % 4), unitPrice: { amount: 2499, currency: 'EUR' } },
      totals: { net: 2499, tax: 475, gross: 2974 },
      tags: ['web', 'spring-promo'],
    },
    projectId: `p${i % 100}`,
    tenantId: `t${i % 10}`,
    userId: `u${i % 1000}`,
    metadata: { correlationId: randomUUID(), causationId: `cmd_${i}`, source: 'checkout-service', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
  };
  return i % 2 === 0 ? withId(e) : e;
};

function line(fields) {
  console.log(JSON.stringify({ bench: 'store-throughput', ...fields }));
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function timed(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const INSERT = `INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING position`;
const ROWS_PER_INSERT = PUBLISHERS;
const MULTI_INSERT = `INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id) VALUES ${Array.from(
  { length: ROWS_PER_INSERT },
  (_, r) => `(${Array.from({ length: 7 }, (_, c) => `$${r * 7 + c + 1}`).join(', ')})`,
).join(', ')} RETURNING position`;
// As src/store/postgres/mod.rs appends (first attempt, bus-generated ids), for one row.
const BUS_APPEND = `INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
  SELECT t.id, t.type, t.payload::jsonb, t.ts, t.project_id, t.tenant_id, t.user_id, t.metadata::jsonb
  FROM (SELECT pg_advisory_xact_lock($9), pg_notify($10, $11)) AS append_lock,
       UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[])
       WITH ORDINALITY AS t(id, type, payload, ts, project_id, tenant_id, user_id, metadata, ord)
  ORDER BY t.ord RETURNING id, position`;
const row = (i) => {
  const e = event(i);
  return [randomUUID(), e.type, JSON.stringify(e.payload), new Date(), e.projectId, e.tenantId, e.userId];
};

async function baselines() {
  return withSchema(async (_url, schema) => {
    const pool = new Pool({ connectionString: DB, max: PUBLISHERS, options: `-c search_path=${schema}` });
    await pool.query(MIGRATION);
    // One INSERT per event, one connection, each awaited: also the raw round trip latency.
    const client = await pool.connect();
    const latencies = [];
    const single = await timed(async () => {
      for (let i = 0; i < N_SINGLE; i++) {
        const t = process.hrtime.bigint();
        await client.query({ name: 'insert', text: INSERT, values: row(i) });
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    });
    latencies.sort((a, b) => a - b);
    line({ case: 'INSERT per event, 1 connection awaited', impl: 'node-postgres', events: N_SINGLE, eventsPerSec: Math.round(N_SINGLE / single), p50Ms: +percentile(latencies, 50).toFixed(3), p99Ms: +percentile(latencies, 99).toFixed(3) });
    // The bus's append statement for one row, awaited (no bus: only what PostgreSQL does).
    const appendLatencies = [];
    for (let i = 0; i < N_SINGLE; i++) {
      const [id, type, payload, ts, p, t, u] = row(i);
      const begin = process.hrtime.bigint();
      await client.query({ name: 'bus-append', text: BUS_APPEND, values: [[id], [type], [payload], [ts], [p], [t], [u], [null], 1578613342, `event_bus:${schema}`, 'bench'] });
      appendLatencies.push(Number(process.hrtime.bigint() - begin) / 1e6);
    }
    appendLatencies.sort((a, b) => a - b);
    line({ case: "the bus's append statement, 1 row, 1 connection awaited", impl: 'node-postgres', events: N_SINGLE, p50Ms: +percentile(appendLatencies, 50).toFixed(3), p99Ms: +percentile(appendLatencies, 99).toFixed(3) });
    // 16 events in flight as one commit, back to back: the ceiling for 16 awaited publishers.
    const multi = await timed(async () => {
      for (let b = 0; b < N_CONCURRENT / ROWS_PER_INSERT; b++) {
        const values = [];
        for (let r = 0; r < ROWS_PER_INSERT; r++) values.push(...row(b * ROWS_PER_INSERT + r));
        await client.query({ name: 'multi-insert', text: MULTI_INSERT, values });
      }
    });
    client.release();
    line({ case: `${ROWS_PER_INSERT} rows per INSERT, one at a time (16 events in flight)`, impl: 'node-postgres', events: N_CONCURRENT, eventsPerSec: Math.round(N_CONCURRENT / multi) });
    // One INSERT per event from 16 concurrent publishers, 16 connections.
    const per = N_CONCURRENT / PUBLISHERS;
    const concurrent = await timed(() =>
      Promise.all(
        Array.from({ length: PUBLISHERS }, async (_, p) => {
          for (let i = 0; i < per; i++) await pool.query({ name: 'insert', text: INSERT, values: row(p * per + i) });
        }),
      ),
    );
    line({ case: 'INSERT per event, 16 concurrent connections', impl: 'node-postgres', events: N_CONCURRENT, eventsPerSec: Math.round(N_CONCURRENT / concurrent) });
    // COPY the same rows in one stream.
    const copyClient = await pool.connect();
    const copy = await timed(() => copyEvents(copyClient, N_MANY, row));
    copyClient.release();
    await pool.end();
    line({ case: 'COPY', impl: 'node-postgres', events: N_MANY, eventsPerSec: Math.round(N_MANY / copy) });
    return {
      rawP50: percentile(latencies, 50),
      appendP50: percentile(appendLatencies, 50),
      perInsert: N_SINGLE / single,
      perInsert16: N_CONCURRENT / concurrent,
      ceiling16: N_CONCURRENT / multi,
      copy: N_MANY / copy,
    };
  });
}

/** One publisher awaiting each publish; returns the p50 latency. */
async function awaitedOneByOne(bus, label) {
  const latencies = [];
  const single = await timed(async () => {
    for (let i = 0; i < N_SINGLE; i++) {
      const t = process.hrtime.bigint();
      await bus.publish(event(i));
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  });
  latencies.sort((a, b) => a - b);
  line({ case: '1 publisher awaited', impl: label, events: N_SINGLE, eventsPerSec: Math.round(N_SINGLE / single), p50Ms: +percentile(latencies, 50).toFixed(3), p99Ms: +percentile(latencies, 99).toFixed(3) });
  return percentile(latencies, 50);
}

/** What the bus adds to an awaited publish without a store round trip (JS → Rust → JS). */
async function busWithoutStore() {
  const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
  const p50 = await awaitedOneByOne(bus, '@situs/event-bus memory');
  await bus.close();
  return p50;
}

async function bus(storeUrl, label) {
  const bus = await EventBus.open({ storeUrl, logger: () => {}, store: { poolSize: PUBLISHERS } });
  const p50 = await awaitedOneByOne(bus, label);
  const per = N_CONCURRENT / PUBLISHERS;
  const concurrent = await timed(() =>
    Promise.all(
      Array.from({ length: PUBLISHERS }, async (_, p) => {
        for (let i = 0; i < per; i++) await bus.publish(event(p * per + i));
      }),
    ),
  );
  line({ case: '16 concurrent publishers', impl: label, events: N_CONCURRENT, eventsPerSec: Math.round(N_CONCURRENT / concurrent) });
  // The same, with the events users send (caller ids on half, ~300-byte payload, metadata).
  const concurrentRealistic = await timed(() =>
    Promise.all(
      Array.from({ length: PUBLISHERS }, async (_, p) => {
        for (let i = 0; i < per; i++) await bus.publish(realistic(p * per + i));
      }),
    ),
  );
  line({ case: '16 concurrent publishers, realistic mix', impl: label, events: N_CONCURRENT, eventsPerSec: Math.round(N_CONCURRENT / concurrentRealistic) });
  // The same 16 publishers, each keeping 32 publishes in flight instead of awaiting each one.
  const pipelined = await timed(() =>
    Promise.all(
      Array.from({ length: PUBLISHERS }, async (_, p) => {
        const inFlight = [];
        for (let i = 0; i < per; i++) {
          inFlight.push(bus.publish(event(p * per + i)));
          if (inFlight.length >= 32) await inFlight.shift();
        }
        await Promise.all(inFlight);
      }),
    ),
  );
  line({ case: '16 concurrent publishers, 32 in flight each', impl: label, events: N_CONCURRENT, eventsPerSec: Math.round(N_CONCURRENT / pipelined) });
  const many = await timed(async () => {
    const pending = [];
    for (let b = 0; b < N_MANY / 500; b++) {
      pending.push(bus.publishMany(Array.from({ length: 500 }, (_, i) => event(b * 500 + i))));
      if (pending.length >= 4) await pending.shift();
    }
    await Promise.all(pending);
  });
  line({ case: 'publishMany(500)', impl: label, events: N_MANY, eventsPerSec: Math.round(N_MANY / many) });
  const manyRealistic = await timed(async () => {
    const pending = [];
    for (let b = 0; b < N_MANY / 500; b++) {
      pending.push(bus.publishMany(Array.from({ length: 500 }, (_, i) => realistic(b * 500 + i))));
      if (pending.length >= 4) await pending.shift();
    }
    await Promise.all(pending);
  });
  line({ case: 'publishMany(500), realistic mix', impl: label, events: N_MANY, eventsPerSec: Math.round(N_MANY / manyRealistic) });
  await bus.close();
  return {
    p50,
    concurrent: N_CONCURRENT / concurrent,
    pipelined: N_CONCURRENT / pipelined,
    many: N_MANY / many,
  };
}

const INSERT_META = `INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id, metadata)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING position`;
const rawRow = (e) => [e.id || randomUUID(), e.type, JSON.stringify(e.payload), new Date(), e.projectId, e.tenantId, e.userId, e.metadata ? JSON.stringify(e.metadata) : null];

async function p50Of(n, once) {
  const latencies = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await once(i);
    latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/**
 * One awaited publisher, p50 of N_LATENCY per case, ROUNDS rounds: each event shape through the
 * bus beside a raw INSERT (node-postgres, prepared, autocommit) of the same row into the same table.
 */
async function latencyRounds() {
  const shapes = [
    ['generated id', (i) => event(i)],
    ['caller id', (i) => withId(event(i))],
    ['caller id + metadata', (i) => withMetadata(withId(event(i)), i)],
    ['realistic mix', realistic],
  ];
  return withSchema(async (url, schema) => {
    const bus = await EventBus.open({ storeUrl: url, logger: () => {} });
    const client = new (require('pg').Client)({ connectionString: DB, options: `-c search_path=${schema}` });
    await client.connect();
    const ratios = {};
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, shape] of shapes) {
        const raw = await p50Of(N_LATENCY, (i) => client.query({ name: 'insert-meta', text: INSERT_META, values: rawRow(shape(i)) }));
        const published = await p50Of(N_LATENCY, (i) => bus.publish(shape(i)));
        const ratio = +(published.p50 / raw.p50).toFixed(2);
        (ratios[name] ||= []).push(ratio);
        line({ case: `1 publisher awaited, ${name}`, impl: process.env.BENCH_PACKAGE ? `@situs/event-bus postgres (${process.env.BENCH_PACKAGE})` : '@situs/event-bus postgres', round, events: N_LATENCY, rawInsertP50Ms: +raw.p50.toFixed(3), p50Ms: +published.p50.toFixed(3), p99Ms: +published.p99.toFixed(3), p50VsRawInsertP50: ratio, target: 1.2 });
      }
    }
    await client.end();
    await bus.close();
    return ratios;
  });
}

async function main() {
  if (process.env.BENCH_ONLY === 'latency') {
    line({ case: 'summary (awaited p50 vs raw INSERT of the same row, per round)', ...(await latencyRounds()), target: 1.2 });
    return;
  }
  const base = await baselines();
  const pg = await withSchema((url) => bus(url, '@situs/event-bus postgres'));
  const latency = await latencyRounds();
  const memoryP50 = await busWithoutStore();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-eb-bench-'));
  await bus(`sqlite://${path.join(dir, 'bench.db')}`, '@situs/event-bus sqlite');
  fs.rmSync(dir, { recursive: true, force: true });
  const r = (x) => +x.toFixed(2);
  line({
    case: 'summary (postgres)',
    concurrentVsCopy: r(pg.concurrent / base.copy),
    concurrentVsPerInsert: r(pg.concurrent / base.perInsert),
    concurrentVsPerInsert16: r(pg.concurrent / base.perInsert16),
    pipelinedVsCopy: r(pg.pipelined / base.copy),
    pipelinedVsPerInsert: r(pg.pipelined / base.perInsert),
    publishManyVsCopy: r(pg.many / base.copy),
    singleP50VsRawInsertP50: r(pg.p50 / base.rawP50),
    targets: { concurrentVsCopy: 0.6, concurrentVsPerInsert: 10, publishManyVsCopy: 0.8, singleP50VsRawInsertP50: 1.3 },
    // What PostgreSQL allows 16 awaited publishers on this machine, whatever sits in between.
    ceiling16VsCopy: r(base.ceiling16 / base.copy),
    ceiling16VsPerInsert: r(base.ceiling16 / base.perInsert),
    concurrentVsCeiling16: r(pg.concurrent / base.ceiling16),
    // One awaited publish, in parts: the bus's statement, and the bus without a store.
    appendStatementP50VsRawInsertP50: r(base.appendP50 / base.rawP50),
    memoryBusP50Ms: +memoryP50.toFixed(3),
    statementPlusMemoryBusVsRawInsertP50: r((base.appendP50 + memoryP50) / base.rawP50),
    // Awaited p50 of each event shape against a raw INSERT of the same row, per round (target 1.2).
    awaitedP50VsRawInsertOfSameRow: latency,
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
