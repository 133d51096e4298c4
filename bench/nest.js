// A burst of fire-and-forget publishes in a real NestJS 11 app: `RealtimeEventsService.publish`
// into an `@OnBusEvent('bench.*')` handler on the memory store, SQLite and PostgreSQL, side by
// side with @nestjs/event-emitter (`emitter.emit` into `@OnEvent('bench.*', { async: true })`)
// in the same app, and a COPY of the same rows into PostgreSQL in the same run. A case's time runs
// from the first publish of the burst until the handler has seen every event of it.
// Prints one JSON line per measurement. Not a test: run with `npm run bench:nest`.
require('reflect-metadata');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { Client } = require('pg');
const { Injectable, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { EventEmitterModule, EventEmitter2, OnEvent } = require('@nestjs/event-emitter');
const { DB, withSchema, copyEvents } = require('./lib/postgres');

// BENCH_PACKAGE=/path/to/another/build compares a baseline build in the same session; its
// @nestjs/* must resolve to the same files as here (give it a node_modules symlink to this one).
const nest = process.env.BENCH_PACKAGE
  ? require(path.join(path.resolve(process.env.BENCH_PACKAGE), 'dist', 'nest'))
  : require('@situs/event-bus/nest');
const { EventBusModule, RealtimeEventsService, OnBusEvent } = nest;
const { EventBus } = process.env.BENCH_PACKAGE ? require(path.resolve(process.env.BENCH_PACKAGE)) : require('@situs/event-bus');

const BURST = Number(process.env.BENCH_BURST || 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);
const WARMUP = Number(process.env.BENCH_WARMUP || 1);
// BENCH_STORES=memory (say) for a quick or profiled run; COPY runs with postgres.
const STORES = (process.env.BENCH_STORES || 'memory,sqlite,postgres').split(',');
const TYPE = 'bench.created';
// The rows of bench/store-throughput.js; the routing fields ride in the payload, where the
// legacy service reads them.
const payload = (i) => ({
  id: i,
  name: `item-${i}`,
  tags: ['a', 'b'],
  nested: { ok: true },
  projectId: `p${i % 100}`,
  tenantId: `t${i % 10}`,
  userId: `u${i % 1000}`,
});
const row = (i) => {
  const p = payload(i);
  return [randomUUID(), TYPE, JSON.stringify(p), new Date(), p.projectId, p.tenantId, p.userId];
};

function line(fields) {
  console.log(JSON.stringify({ bench: 'nest', ...fields }));
}

/** Counts deliveries; `expect(n)` resolves once `n` more have arrived. */
class Counter {
  seen = 0;
  target = Infinity;
  done = () => {};
  hit() {
    if (++this.seen === this.target) this.done();
  }
  expect(n) {
    this.target = this.seen + n;
    return new Promise((resolve) => (this.done = resolve));
  }
}

const decorate = (cls, method, decorator) => {
  const descriptor = Object.getOwnPropertyDescriptor(cls.prototype, method);
  Object.defineProperty(cls.prototype, method, Reflect.decorate([decorator], cls.prototype, method, descriptor) ?? descriptor);
};

/** A Nest app module with both handlers; a new set of classes per app (options differ). */
function appModule(storeUrl) {
  class BusHandler {
    counter = new Counter();
    handle() {
      this.counter.hit();
    }
  }
  decorate(BusHandler, 'handle', OnBusEvent('bench.*'));
  Reflect.decorate([Injectable()], BusHandler);

  class EmitterHandler {
    counter = new Counter();
    handle() {
      this.counter.hit();
    }
  }
  decorate(EmitterHandler, 'handle', OnEvent('bench.*', { async: true }));
  Reflect.decorate([Injectable()], EmitterHandler);

  class AppModule {}
  Reflect.decorate(
    [
      Module({
        imports: [
          // BENCH_METRICS=off: the same app with metrics.enabled false (histograms, labels and
          // handler timing off), to see what they cost on this path.
          EventBusModule.forRoot({ storeUrl, logger: () => {}, metrics: { enabled: process.env.BENCH_METRICS !== 'off' } }),
          // Wildcards, as `bench.*` needs (and as the legacy app configured it).
          EventEmitterModule.forRoot({ wildcard: true, delimiter: '.' }),
        ],
        providers: [BusHandler, EmitterHandler],
      }),
    ],
    AppModule,
  );
  return { AppModule, BusHandler, EmitterHandler };
}

async function startApp(storeUrl) {
  const { AppModule, BusHandler, EmitterHandler } = appModule(storeUrl);
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  await app.init();
  return {
    app,
    realtime: app.get(RealtimeEventsService),
    emitter: app.get(EventEmitter2),
    bus: app.get(EventBus),
    busCounter: app.get(BusHandler).counter,
    emitterCounter: app.get(EmitterHandler).counter,
  };
}

/** Seconds from the first call of `burst` until `counter` has seen BURST more events. */
async function timeBurst(counter, burst) {
  const all = counter.expect(BURST);
  const started = process.hrtime.bigint();
  burst();
  await all;
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const results = new Map();
function record(name, seconds, extra = {}) {
  let r = results.get(name);
  if (!r) results.set(name, (r = { seconds: [], extra: [] }));
  r.seconds.push(seconds);
  r.extra.push(extra);
}

function report(name, impl) {
  const r = results.get(name);
  const eventsPerSec = r.seconds.map((s) => Math.round(BURST / s));
  const summary = {
    case: name,
    impl,
    events: BURST,
    rounds: r.seconds.length,
    eventsPerSecMedian: Math.round(BURST / median(r.seconds)),
    eventsPerSecBest: Math.max(...eventsPerSec),
    eventsPerSec,
  };
  // Per-burst commits and handler crossings, when the case has them.
  if (r.extra[0]?.commits !== undefined) {
    summary.commitsPerBurst = median(r.extra.map((e) => e.commits));
    summary.deliveryBatchesPerBurst = median(r.extra.map((e) => e.deliveryBatches));
  }
  line(summary);
  return summary.eventsPerSecMedian;
}

async function busBurst(name, ctx, round) {
  const before = ctx.bus.metrics();
  const seconds = await timeBurst(ctx.busCounter, () => {
    for (let i = 0; i < BURST; i++) ctx.realtime.publish(TYPE, payload(round * BURST + i));
  });
  const after = ctx.bus.metrics();
  if (ctx.realtime.failedPublishes > 0) throw new Error(`${name}: ${ctx.realtime.failedPublishes} publishes failed`);
  return { seconds, commits: after.batches - before.batches, deliveryBatches: after.deliveryBatches - before.deliveryBatches };
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-eb-nest-bench-'));
  try {
    await withSchema(async (pgUrl, schema) => {
      const urls = { memory: 'memory:', sqlite: `sqlite://${path.join(dir, 'bench.db')}`, postgres: pgUrl };
      const apps = {};
      for (const store of ['memory', ...STORES.filter((s) => s !== 'memory')]) apps[store] = await startApp(urls[store]);
      // The COPY goes into the table the bus migrated (same definition, same indexes, same size).
      const copyClient = new Client({ connectionString: DB, options: `-c search_path=${schema}` });
      await copyClient.connect();
      try {
        // Cases interleave within each round, so a busy moment of the shared machine hits all.
        for (let round = 0; round < WARMUP + ROUNDS; round++) {
          const keep = round >= WARMUP;
          const emitter = await timeBurst(apps.memory.emitterCounter, () => {
            for (let i = 0; i < BURST; i++) apps.memory.emitter.emit(TYPE, payload(round * BURST + i));
          });
          if (keep) record('@OnEvent', emitter);
          // What any event pays to cross as JSON (as the bus's do), with no bus at all.
          const floorStarted = process.hrtime.bigint();
          const texts = [];
          for (let i = 0; i < BURST; i++) texts.push(JSON.stringify({ type: TYPE, payload: payload(round * BURST + i) }));
          const parsed = JSON.parse(`[${texts.join(',')}]`);
          if (parsed.length !== BURST) throw new Error('JSON floor: lost events');
          if (keep) record('JSON floor', Number(process.hrtime.bigint() - floorStarted) / 1e9);
          for (const store of STORES) {
            const r = await busBurst(store, apps[store], round);
            if (keep) record(`bus ${store}`, r.seconds, r);
          }
          if (STORES.includes('postgres')) {
            const copyStarted = process.hrtime.bigint();
            await copyEvents(copyClient, BURST, row);
            if (keep) record('COPY', Number(process.hrtime.bigint() - copyStarted) / 1e9);
          }
        }
      } finally {
        await copyClient.end();
        for (const ctx of Object.values(apps)) await ctx.app.close();
      }
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const onEvent = report('@OnEvent', '@nestjs/event-emitter emit → @OnEvent({ async: true })');
  const floor = report('JSON floor', 'JSON.stringify each event, JSON.parse them as one array (no bus)');
  const impl = { memory: 'memory:', sqlite: 'SQLite file', postgres: 'PostgreSQL' };
  const bus = {};
  for (const store of STORES) bus[store] = report(`bus ${store}`, `RealtimeEventsService.publish → @OnBusEvent, ${impl[store]}`);
  const memory = bus.memory;
  const pg = bus.postgres;
  const copy = STORES.includes('postgres') ? report('COPY', 'node-postgres COPY of the same rows, one statement') : undefined;
  const r = (x) => +x.toFixed(2);
  line({
    case: 'summary',
    memoryEventsPerSec: memory,
    memoryVsOnEvent: r(memory / onEvent),
    postgresVsCopy: copy && r(pg / copy),
    sqliteEventsPerSec: bus.sqlite,
    postgresEventsPerSec: pg,
    onEventEventsPerSec: onEvent,
    // The most any JSON-crossing bus could do here, against @OnEvent and against the bus.
    jsonFloorEventsPerSec: floor,
    jsonFloorVsOnEvent: r(floor / onEvent),
    memoryVsJsonFloor: r(memory / floor),
    copyEventsPerSec: copy,
    targets: { memoryEventsPerSec: 150_000, memoryVsOnEvent: 0.7, postgresVsCopy: 0.6 },
    met: { memoryEventsPerSec: memory >= 150_000, memoryVsOnEvent: memory / onEvent >= 0.7, postgresVsCopy: copy && pg / copy >= 0.6 },
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
