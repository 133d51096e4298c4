// Cross-process delivery (issue 4): a publisher process and a subscriber process on the same
// PostgreSQL, side by side in the same run with the naive approach (INSERT each event and NOTIFY
// its JSON in the same statement; the subscriber LISTENs and parses each payload).
//
// Each case runs in a fresh schema with fresh child processes (child_process.fork of this file):
//   parent ── fork ──► subscriber(s): open, subscribe, count what arrives, record receive times
//          └─ fork ──► publisher:     open, warm up, then publish the measured load
// Every measured event carries its publish wall-clock time (performance.timeOrigin +
// performance.now(), taken just before the publish call) and a sequence number; both processes run
// on this machine, so their clocks agree. Prints one JSON line per case, then a comparison.
// Run: npm run bench:cross   (PostgreSQL at BENCH_DATABASE_URL / TEST_DATABASE_URL)
//
// Knobs (environment): BENCH_CROSS_EVENTS (events per max-rate case, 20000), BENCH_CROSS_RATE (1000),
// BENCH_CROSS_SECONDS (paced duration, 10), BENCH_CROSS_IN_FLIGHT (publishes in flight per
// publisher, 8), BENCH_CROSS_POLL_MS (the subscriber bus's delivery.pollIntervalMs; bus default if
// unset), BENCH_CROSS_CASES (comma-separated case ids, default all), BENCH_CROSS_TRACE=1 (the bus
// subscriber also LISTENs on the bus's doorbell channel and timestamps each doorbell).
const fs = require('node:fs');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { Client, Pool } = require('pg');
const processes = require('./lib/processes');
const { cpuOf, threadsCpu, machineCpu, serve } = processes;
const spawnChild = (role, args) => processes.spawnChild(__filename, role, args);

const DB = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const MIGRATION = fs.readFileSync(path.join(__dirname, '..', 'migrations', 'postgres', '0001_events.sql'), 'utf8');
const N_MAX = Number(process.env.BENCH_CROSS_EVENTS || 20000);
const RATE = Number(process.env.BENCH_CROSS_RATE || 1000);
const SECONDS = Number(process.env.BENCH_CROSS_SECONDS || 10);
const PUBLISHERS = 16;
const IN_FLIGHT = Number(process.env.BENCH_CROSS_IN_FLIGHT || 8);
const MANY = 100; // events per publishMany call
const MANY_IN_FLIGHT = 4;
const WARMUP = 500;
const POLL_MS = process.env.BENCH_CROSS_POLL_MS ? Number(process.env.BENCH_CROSS_POLL_MS) : undefined;
const TRACE = process.env.BENCH_CROSS_TRACE === '1';
const NAIVE_CHANNEL = 'bench_naive';
const DRAIN_TIMEOUT_MS = 60_000;

const now = () => performance.timeOrigin + performance.now();

// The load every case applies. `max`: PUBLISHERS × IN_FLIGHT publish loops share one counter, each
// awaiting its publish before the next (16 publishers with IN_FLIGHT publishes in flight each).
// `paced`: one publish per 1/rate s on a ~1 ms timer, none awaited before the next is due.
// `many`: publishMany(MANY) calls, MANY_IN_FLIGHT in flight (the bus only; no naive equivalent).
const maxLoad = { kind: 'max', n: N_MAX, publishers: PUBLISHERS, inFlight: IN_FLIGHT };
const pacedLoad = { kind: 'paced', rate: RATE, seconds: SECONDS };

// One entry per measured case. `subscribers` processes each subscribe with `subscribe` options; the
// case is done when together they received every event once.
const CASES = [
  { id: 'bus-max', case: 'max rate', impl: 'bus', load: maxLoad },
  { id: 'naive-max', case: 'max rate', impl: 'naive', load: maxLoad },
  { id: 'bus-paced', case: `${RATE} ev/s`, impl: 'bus', load: pacedLoad },
  { id: 'naive-paced', case: `${RATE} ev/s`, impl: 'naive', load: pacedLoad },
  { id: 'bus-many', case: `max rate, publishMany(${MANY})`, impl: 'bus', load: { kind: 'many', n: N_MAX, batch: MANY, inFlight: MANY_IN_FLIGHT } },
  // Durable consumer group: 2 subscriber processes share one group's events (issue 4, later).
  // Until `subscribe` accepts `group`, the subscribers report the error and the case is skipped.
  // leaseMs 1500: members renew (and rebalance) every 500 ms; the case waits for that before the load.
  { id: 'group', case: 'group', impl: 'bus', subscribers: 2, subscribe: { group: 'bench', from: 'beginning', leaseMs: 1500 }, settleMs: 2000, load: maxLoad },
];

const event = (seq, t, warm = false) => ({
  type: warm ? 'bench.warm' : 'bench.tick',
  payload: { seq, t, name: `item-${seq}`, tags: ['a', 'b'], nested: { ok: true } },
  projectId: `p${seq % 100}`,
  tenantId: `t${seq % 10}`,
  userId: `u${seq % 1000}`,
});

// One statement, so one transaction and one round trip: the row and its JSON notification commit
// together (the cheapest form of the naive approach).
const NAIVE_PUBLISH = `WITH e AS (
    INSERT INTO event_bus_events (id, type, payload, "timestamp", project_id, tenant_id, user_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
  SELECT pg_notify('${NAIVE_CHANNEL}', row_to_json(e)::text) FROM e`;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const ms = (x) => (x === null || x === undefined ? null : +x.toFixed(2));

function stats(values) {
  const sorted = Float64Array.from(values).sort();
  return { p50: ms(percentile(sorted, 50)), p99: ms(percentile(sorted, 99)), max: ms(sorted[sorted.length - 1] ?? null) };
}

function storeUrlOf(schema) {
  const sep = DB.includes('?') ? '&' : '?';
  return `${DB}${sep}options[search_path]=${schema}`;
}

async function subscriberMain(impl, schema, subscribeOptions) {
  const recv = new Map(); // seq → receive time
  let warm = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let lastPosition = 0;
  const onEvent = (seq, isWarm, position, t) => {
    if (position <= lastPosition) outOfOrder++;
    lastPosition = position;
    if (isWarm) warm++;
    else if (recv.has(seq)) duplicates++;
    else recv.set(seq, t);
  };
  let bus;
  let client;
  let skipped;
  let marked;
  const doorbells = []; // arrival times of the bus's NOTIFY doorbells (BENCH_CROSS_TRACE)
  if (impl === 'bus') {
    const { EventBus } = require('@situs/event-bus');
    bus = await EventBus.open({
      storeUrl: storeUrlOf(schema),
      logger: () => {},
      ...(POLL_MS ? { delivery: { pollIntervalMs: POLL_MS } } : {}),
    });
    try {
      const sub = bus.subscribe('bench.*', (e) => onEvent(e.payload.seq, e.type === 'bench.warm', e.position, now()), subscribeOptions);
      if (sub && typeof sub.then === 'function') await sub; // in case subscribing becomes asynchronous
    } catch (err) {
      skipped = `subscribe(…, ${JSON.stringify(subscribeOptions)}) failed: ${err.code ?? ''} ${err.message}`;
    }
    if (TRACE) {
      // A second listener on the bus's doorbell channel, only to timestamp the doorbells.
      client = new Client({ connectionString: DB });
      await client.connect();
      client.on('notification', () => doorbells.push(now()));
      await client.query(`LISTEN "event_bus:${schema}"`);
    }
  } else {
    client = new Client({ connectionString: DB });
    await client.connect();
    client.on('notification', (msg) => {
      const t = now();
      const row = JSON.parse(msg.payload);
      onEvent(row.payload.seq, row.type === 'bench.warm', Number(row.position), t);
    });
    await client.query(`LISTEN ${NAIVE_CHANNEL}`);
  }
  serve({
    skipped: () => skipped,
    count: () => ({ warm, received: recv.size }),
    mark: () => {
      marked = bus ? bus.metrics() : undefined;
      doorbells.length = 0;
    },
    report: () => {
      let lastReceive = -Infinity;
      for (const t of recv.values()) lastReceive = Math.max(lastReceive, t);
      const metrics = bus ? bus.metrics() : undefined;
      const delta = metrics && marked && Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, v - (marked[k] ?? 0)]));
      return { received: recv.size, duplicates, outOfOrder, lastReceive, recv: [...recv.entries()], metrics: delta, doorbells: TRACE ? doorbells : undefined };
    },
    close: async () => {
      if (bus) await bus.close();
      if (client) await client.end();
      setImmediate(() => process.exit(0));
    },
  });
}

async function publisherMain(impl, schema) {
  let publish;
  let publishMany;
  let bus;
  let pool;
  if (impl === 'bus') {
    const { EventBus } = require('@situs/event-bus');
    bus = await EventBus.open({ storeUrl: storeUrlOf(schema), logger: () => {}, store: { poolSize: PUBLISHERS } });
    publish = (e) => bus.publish(e);
    publishMany = (events) => bus.publishMany(events);
  } else {
    pool = new Pool({ connectionString: DB, max: PUBLISHERS, options: `-c search_path=${schema}` });
    publish = (e) =>
      pool.query({
        name: 'naive-publish',
        text: NAIVE_PUBLISH,
        values: [randomUUID(), e.type, JSON.stringify(e.payload), new Date(), e.projectId, e.tenantId, e.userId],
      });
  }
  const sent = [];
  const resolved = [];
  const one = async (seq) => {
    const t = now();
    sent[seq] = t;
    await publish(event(seq, t));
    resolved[seq] = now();
  };
  const loads = {
    async max({ n, publishers, inFlight }) {
      let next = 0;
      const loop = async () => {
        while (next < n) await one(next++);
      };
      await Promise.all(Array.from({ length: publishers * inFlight }, loop));
    },
    async many({ n, batch, inFlight }) {
      let next = 0;
      const loop = async () => {
        while (next < n) {
          const first = next;
          next = Math.min(n, next + batch);
          const t = now();
          const events = [];
          for (let seq = first; seq < next; seq++) {
            sent[seq] = t;
            events.push(event(seq, t));
          }
          await publishMany(events);
          const done = now();
          for (let seq = first; seq < next; seq++) resolved[seq] = done;
        }
      };
      await Promise.all(Array.from({ length: inFlight }, loop));
    },
    async paced({ rate, seconds }) {
      const total = Math.round(rate * seconds);
      const pending = new Set();
      let next = 0;
      const start = now();
      await new Promise((resolve, reject) => {
        const tick = () => {
          const due = Math.min(total, Math.floor(((now() - start) * rate) / 1000) + 1);
          while (next < due) {
            const p = one(next++).catch(reject);
            pending.add(p);
            p.finally(() => pending.delete(p));
          }
          if (next >= total) resolve();
          else setTimeout(tick, 1);
        };
        tick();
      });
      await Promise.all(pending);
    },
  };
  serve({
    async warmup() {
      let next = 0;
      const loop = async () => {
        while (next < WARMUP) {
          const seq = next++;
          await publish(event(seq, now(), true));
        }
      };
      await Promise.all(Array.from({ length: 16 }, loop));
    },
    async run({ load }) {
      const before = bus ? bus.metrics() : undefined;
      await loads[load.kind](load);
      const after = bus ? bus.metrics() : undefined;
      return {
        sent,
        resolved,
        metrics: after && { published: after.published - before.published, batches: after.batches - before.batches },
      };
    },
    close: async () => {
      if (bus) await bus.close();
      if (pool) await pool.end();
      setImmediate(() => process.exit(0));
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Parent side.

function postgresCpu() {
  let total = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') total += cpuOf(pid);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

// Where the CPU went while a case ran: this case's processes, PostgreSQL (every backend, other
// sessions' included) and the whole machine (other work on it included), as % of one core.
function cpuSnapshot(publisher, subscribers) {
  return {
    wall: performance.now() / 1000,
    publisher: cpuOf(publisher.child.pid),
    publisherThreads: threadsCpu(publisher.child.pid),
    subscriberThreads: threadsCpu(subscribers[0].child.pid),
    subscribers: subscribers.reduce((s, c) => s + cpuOf(c.child.pid), 0),
    postgres: postgresCpu(),
    machine: machineCpu(),
  };
}

function cpuDelta(a, b) {
  const wall = b.wall - a.wall;
  const pct = (x) => Math.round((100 * x) / wall);
  const threads = (x, y) =>
    Object.fromEntries(Object.keys(y).map((k) => [k, pct(y[k] - (x[k] ?? 0))]).filter(([, v]) => v > 0));
  return {
    publisherThreadsPct: threads(a.publisherThreads, b.publisherThreads),
    subscriberThreadsPct: threads(a.subscriberThreads, b.subscriberThreads),
    publisherPct: pct(b.publisher - a.publisher),
    subscriberPct: pct(b.subscribers - a.subscribers),
    postgresPct: pct(b.postgres - a.postgres),
    machineBusyPct: pct(b.machine.busy - a.machine.busy),
    machineStealPct: pct(b.machine.steal - a.machine.steal),
    machineCapacityPct: pct(b.machine.total - a.machine.total),
  };
}

// WAL written and flushed during a case, warm-up included (cluster-wide: other sessions count too).
// The byte count comes from the WAL position; pg_stat_wal's counters are complete once the case's
// backends have exited (they flush their statistics then).
async function walStats(admin) {
  try {
    const { rows } = await admin.query('SELECT pg_current_wal_lsn() AS lsn, wal_fpi, wal_sync FROM pg_stat_wal');
    return rows[0];
  } catch {
    return undefined;
  }
}

function walDelta(a, b, events) {
  if (!a || !b) return undefined;
  const d = (k) => Number(b[k]) - Number(a[k]);
  const lsn = (x) => x.split('/').reduce((hi, lo) => hi * 2 ** 32 + parseInt(lo, 16), 0);
  const bytes = lsn(b.lsn) - lsn(a.lsn);
  return { events, bytesPerEvent: Math.round(bytes / events), fullPageImages: d('wal_fpi'), syncs: d('wal_sync'), eventsPerSync: +(events / Math.max(1, d('wal_sync'))).toFixed(1) };
}

const sleep = (msDelay) => new Promise((r) => setTimeout(r, msDelay));

async function until(subscribers, field, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(subscribers.map((s) => s.request('count')));
    const total = counts.reduce((sum, c) => sum + c[field], 0);
    if (total >= n || Date.now() > deadline) return total;
    await sleep(20);
  }
}

async function withSchema(fn) {
  const schema = `eb_bench_${randomUUID().replace(/-/g, '')}`;
  const admin = new Client({ connectionString: DB });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  try {
    return await fn(schema, admin);
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
}

function line(fields) {
  console.log(JSON.stringify({ bench: 'cross-process', ...fields }));
}

async function runCase(spec) {
  return withSchema(async (schema, admin) => {
    if (spec.impl === 'naive') await admin.query(`SET search_path = ${schema}; ${MIGRATION}; RESET search_path`);
    const subscribers = Array.from({ length: spec.subscribers ?? 1 }, () =>
      spawnChild('subscriber', [spec.impl, schema, JSON.stringify(spec.subscribe ?? {})]),
    );
    const children = [...subscribers];
    try {
      await Promise.all(subscribers.map((s) => s.ready));
      const skipped = (await Promise.all(subscribers.map((s) => s.request('skipped')))).find(Boolean);
      if (skipped) return { case: spec.case, impl: spec.impl, skipped };
      const publisher = spawnChild('publisher', [spec.impl, schema]);
      children.push(publisher);
      await publisher.ready;
      const walBefore = await walStats(admin);
      await publisher.request('warmup');
      const warmed = await until(subscribers, 'warm', WARMUP, 30_000);
      if (warmed < WARMUP) throw new Error(`${spec.id}: only ${warmed} of ${WARMUP} warm-up events arrived`);
      // Both group members hold partitions before the measured load (the second one joins while
      // the first holds them all, and gets its share at the first one's next renewal).
      if (spec.settleMs) await new Promise((r) => setTimeout(r, spec.settleMs));
      await Promise.all(subscribers.map((s) => s.request('mark')));
      const cpuBefore = cpuSnapshot(publisher, subscribers);
      const pub = await publisher.request('run', { load: spec.load });
      const n = pub.sent.length;
      await until(subscribers, 'received', n, DRAIN_TIMEOUT_MS);
      pub.cpu = cpuDelta(cpuBefore, cpuSnapshot(publisher, subscribers));
      const reports = await Promise.all(subscribers.map((s) => s.request('report')));
      await Promise.all(children.map((c) => c.request('close').catch(() => undefined)));
      await Promise.all(children.map((c) => c.exited));
      return summarise(spec, schema, admin, pub, reports, walBefore);
    } finally {
      for (const c of children) if (c.child.exitCode === null) c.child.kill();
    }
  });
}

async function summarise(spec, schema, admin, pub, reports, walBefore) {
  const n = pub.sent.length;
  const recv = new Map();
  let duplicates = reports.reduce((sum, r) => sum + r.duplicates, 0);
  for (const r of reports) {
    for (const [seq, t] of r.recv) {
      // An event handled by two members of a group counts once, at its first receipt.
      if (recv.has(seq)) duplicates++;
      if (!recv.has(seq) || t < recv.get(seq)) recv.set(seq, t);
    }
  }
  const e2e = [];
  const commit = [];
  const afterCommit = [];
  for (let seq = 0; seq < n; seq++) {
    commit.push(pub.resolved[seq] - pub.sent[seq]);
    const t = recv.get(seq);
    if (t === undefined) continue;
    e2e.push(t - pub.sent[seq]);
    afterCommit.push(t - pub.resolved[seq]);
  }
  const firstPublish = pub.sent.reduce((a, b) => Math.min(a, b), Infinity);
  const lastPublished = pub.resolved.reduce((a, b) => Math.max(a, b), -Infinity);
  const lastReceive = Math.max(...reports.map((r) => r.lastReceive));
  const seconds = (lastReceive - firstPublish) / 1000;
  const sub = reports.map((r) => r.metrics).filter(Boolean);
  const result = {
    case: spec.case,
    impl: spec.impl,
    load: describeLoad(spec.load),
    events: n,
    received: recv.size,
    duplicates,
    outOfOrder: reports.reduce((s, r) => s + r.outOfOrder, 0),
    eventsPerSec: Math.round(recv.size / seconds),
    publishEventsPerSec: Math.round(n / ((lastPublished - firstPublish) / 1000)),
    latencyMs: stats(e2e),
    ...(spec.subscribers > 1 ? { perSubscriber: reports.map((r) => r.received) } : {}),
    cpu: pub.cpu,
  };
  // Backends flush their statistics when they exit, and every connection of this case has closed.
  await sleep(500);
  result.wal = walDelta(walBefore, await walStats(admin), n + WARMUP);
  if (spec.impl === 'bus') {
    // Where the time goes: publish → publish resolved (committed, answered in the publisher's JS)
    // and publish resolved → handler ran in the subscriber process.
    result.commitMs = stats(commit);
    result.commitToReceiveMs = stats(afterCommit);
    result.publisher = { commits: pub.metrics.batches, eventsPerCommit: +(pub.metrics.published / pub.metrics.batches).toFixed(1) };
    result.subscriber = sub.map((m) => ({
      deliveryBatches: m.deliveryBatches,
      eventsPerDeliveryBatch: +(m.delivered / m.deliveryBatches).toFixed(1),
    }));
    // Reads of the log (the subscribers' tailers and catch-up): index scans on the events table.
    const { rows } = await admin.query(
      `SELECT idx_scan, idx_tup_fetch, seq_scan FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'event_bus_events'`,
      [schema],
    );
    if (rows[0]) result.logReads = { indexScans: Number(rows[0].idx_scan), rowsFetched: Number(rows[0].idx_tup_fetch), seqScans: Number(rows[0].seq_scan), note: 'whole run, warm-up included' };
  } else {
    result.commitMs = stats(commit);
  }
  if (TRACE && spec.impl === 'bus') {
    // For each event, the last doorbell that arrived before its handler ran: publish → doorbell
    // (commit + NOTIFY delivery) and doorbell → handler (tailer read, routing, crossing into JS).
    const bells = reports.flatMap((r) => r.doorbells ?? []).sort((x, y) => x - y);
    const toBell = [];
    const bellToHandler = [];
    for (const [seq, t] of recv) {
      let lo = 0;
      let hi = bells.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (bells[mid] <= t) lo = mid + 1;
        else hi = mid;
      }
      const bell = bells[lo - 1];
      if (bell === undefined || bell < pub.sent[seq]) continue;
      toBell.push(bell - pub.sent[seq]);
      bellToHandler.push(t - bell);
    }
    result.trace = { doorbells: bells.length, eventsMatched: toBell.length, publishToDoorbellMs: stats(toBell), doorbellToHandlerMs: stats(bellToHandler) };
  }
  return result;
}

function describeLoad(load) {
  if (load.kind === 'max') return `${load.publishers} publishers × ${load.inFlight} in flight (publish each)`;
  if (load.kind === 'many') return `publishMany(${load.batch}), ${load.inFlight} in flight`;
  return `paced ${load.rate}/s for ${load.seconds} s, not awaited`;
}

async function main() {
  const wanted = process.env.BENCH_CROSS_CASES ? new Set(process.env.BENCH_CROSS_CASES.split(',')) : null;
  const results = {};
  for (const spec of CASES) {
    if (wanted && !wanted.has(spec.id)) continue;
    try {
      const result = await runCase(spec);
      results[spec.id] = result;
      line(result);
    } catch (err) {
      line({ case: spec.case, impl: spec.impl, error: String((err && err.message) || err) });
      process.exitCode = 1;
    }
  }
  const bm = results['bus-max'];
  const nm = results['naive-max'];
  const bp = results['bus-paced'];
  const np = results['naive-paced'];
  line({
    case: 'summary',
    maxRateEventsPerSec: { bus: bm?.eventsPerSec, naive: nm?.eventsPerSec, busVsNaive: bm && nm ? +(bm.eventsPerSec / nm.eventsPerSec).toFixed(2) : null },
    maxRateP99Ms: { bus: bm?.latencyMs.p99, naive: nm?.latencyMs.p99 },
    pacedP99Ms: { bus: bp?.latencyMs.p99, naive: np?.latencyMs.p99 },
    targets: {
      busVsNaiveAtLeast5: bm && nm ? bm.eventsPerSec >= 5 * nm.eventsPerSec : null,
      pacedBusP99AtMost20Ms: bp ? bp.latencyMs.p99 <= 20 : null,
    },
  });
}

const [role, impl, schema, options] = process.argv.slice(2);
const entry =
  role === 'subscriber' ? () => subscriberMain(impl, schema, JSON.parse(options)) : role === 'publisher' ? () => publisherMain(impl, schema) : main;
entry().catch((err) => {
  console.error(err);
  process.exit(1);
});
