// What the metrics cost: the same publish workloads with `metrics.enabled` on and off, rounds
// alternating in one run (so a busy moment of the shared machine hits both), on the memory store
// and on PostgreSQL. Prints one JSON line per round and a summary. Not a test: run with
// `npm run bench:metrics`.
const { EventBus } = require(process.env.BENCH_PACKAGE || '@situs/event-bus');
const { withSchema } = require('./lib/postgres');

const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);
const MEMORY_EVENTS = Number(process.env.BENCH_MEMORY_EVENTS || 20_000);
const PG_EVENTS = Number(process.env.BENCH_PG_EVENTS || 10_000);
const PUBLISHERS = 16;
const TYPES = ['project.created', 'project.updated', 'user.created', 'menu.item_updated'];
const event = (i) => ({ type: TYPES[i % TYPES.length], payload: { id: i, name: `item-${i}`, tags: ['a', 'b'] }, projectId: `p${i % 10}` });

function line(fields) {
  console.log(JSON.stringify({ bench: 'metrics-cost', ...fields }));
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Events/s of `events` publishes (all in flight) delivered to one handler subscribed to all. */
async function memoryRound(metricsOn) {
  const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {}, metrics: { enabled: metricsOn } });
  let seen = 0;
  let done;
  const all = new Promise((r) => (done = r));
  bus.subscribe('**', () => {
    if (++seen === MEMORY_EVENTS) done();
  });
  const started = process.hrtime.bigint();
  for (let i = 0; i < MEMORY_EVENTS; i++) bus.publish(event(i));
  await all;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await bus.close();
  return MEMORY_EVENTS / seconds;
}

/** Events/s of 16 publishers each awaiting its publishes, on PostgreSQL, with a subscriber. */
async function postgresRound(url, metricsOn) {
  const bus = await EventBus.open({ storeUrl: url, logger: () => {}, metrics: { enabled: metricsOn } });
  bus.subscribe('**', () => {});
  const per = PG_EVENTS / PUBLISHERS;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: PUBLISHERS }, async (_, p) => {
      for (let i = 0; i < per; i++) await bus.publish(event(p * per + i));
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await bus.close();
  return PG_EVENTS / seconds;
}

async function main() {
  const results = { memory: { on: [], off: [] }, postgres: { on: [], off: [] } };
  await withSchema(async (url) => {
    for (let round = 0; round < ROUNDS + 1; round++) {
      // Alternate which goes first, so neither always runs on a warmer machine.
      const order = round % 2 ? ['off', 'on'] : ['on', 'off'];
      for (const which of order) {
        const memory = await memoryRound(which === 'on');
        const postgres = await postgresRound(url, which === 'on');
        // Round 0 warms up (JIT, the schema's first pages).
        if (round === 0) continue;
        results.memory[which].push(memory);
        results.postgres[which].push(postgres);
        line({ round, metrics: which, memoryEventsPerSec: Math.round(memory), postgresEventsPerSec: Math.round(postgres) });
      }
    }
  });
  const summary = {};
  for (const store of ['memory', 'postgres']) {
    const on = median(results[store].on);
    const off = median(results[store].off);
    summary[store] = { onMedian: Math.round(on), offMedian: Math.round(off), onVsOff: +(on / off).toFixed(3) };
  }
  line({ case: 'summary', ...summary, target: 'on ≥ 0.95 × off' });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
