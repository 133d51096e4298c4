// Memory-mode publish→deliver throughput, side by side with EventEmitter2 wildcard dispatch in the
// same run. Prints one JSON line per measurement. Not a test: run with `npm run bench`.
//
// Each case counts an event once a subscriber handler has received it (publish → deliver).
const { EventEmitter2 } = require('eventemitter2');
// BENCH_PACKAGE=/path/to/another/build compares a baseline build in the same session.
const { EventBus } = require(process.env.BENCH_PACKAGE || '@situs/event-bus');

const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const TYPES = ['project.created', 'project.updated', 'user.created', 'menu.item_updated'];
const payload = (i) => ({ id: i, name: `item-${i}`, tags: ['a', 'b'], nested: { ok: true } });

function line(fields) {
  console.log(JSON.stringify({ bench: 'memory-throughput', ...fields }));
}

async function measure(name, impl, events, run) {
  const best = { eventsPerSec: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const started = process.hrtime.bigint();
    await run();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const eventsPerSec = Math.round(events / seconds);
    if (eventsPerSec > best.eventsPerSec) Object.assign(best, { seconds: +seconds.toFixed(4), eventsPerSec });
  }
  line({ case: name, impl, events, rounds: ROUNDS, ...best });
  return best.eventsPerSec;
}

async function situs(name, events, publish) {
  const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
  let delivered = 0;
  let target = 0;
  let done = () => {};
  bus.subscribe('project.*', () => {
    if (++delivered === target) done();
  });
  bus.subscribe(['user.*', 'menu.#'], () => {
    if (++delivered === target) done();
  });
  const result = await measure(name, '@situs/event-bus', events, async () => {
    target = delivered + events;
    const all = new Promise((r) => (done = r));
    await publish(bus);
    await all;
  });
  await bus.close();
  return result;
}

async function emitter2(name, events) {
  const ee = new EventEmitter2({ wildcard: true, delimiter: '.' });
  let delivered = 0;
  ee.on('project.*', () => delivered++);
  ee.on('user.*', () => delivered++);
  ee.on('menu.**', () => delivered++);
  return measure(name, 'eventemitter2', events, async () => {
    for (let i = 0; i < events; i++) {
      ee.emit(TYPES[i % TYPES.length], { type: TYPES[i % TYPES.length], payload: payload(i) });
    }
  });
}

// The floor under one awaited publish: an async napi call that does nothing (whenIdle on an idle
// bus), i.e. JS → tokio → JS. Internal API, used here only to put the single-publish number in context.
async function napiRoundTrip(calls) {
  const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
  const result = await measure('napi async round trip (no-op)', 'napi baseline', calls, async () => {
    for (let i = 0; i < calls; i++) await bus.nativeBus.whenIdle();
  });
  await bus.close();
  return result;
}

async function main() {
  const results = {};
  await napiRoundTrip(20_000);
  const single = 20_000;
  results.single = await situs('single publish awaited', single, async (bus) => {
    for (let i = 0; i < single; i++) await bus.publish({ type: TYPES[i % 4], payload: payload(i) });
  });
  const concurrent = 10_000;
  results.concurrent = await situs('10k concurrent publishes', concurrent, async (bus) => {
    const all = [];
    for (let i = 0; i < concurrent; i++) all.push(bus.publish({ type: TYPES[i % 4], payload: payload(i) }));
    await Promise.all(all);
  });
  const many = 200_000;
  results.many = await situs('publishMany(500)', many, async (bus) => {
    const pending = [];
    for (let b = 0; b < many / 500; b++) {
      const batch = [];
      for (let i = 0; i < 500; i++) batch.push({ type: TYPES[i % 4], payload: payload(b * 500 + i) });
      pending.push(bus.publishMany(batch));
      // Keep a few batches in flight, as a producer with back-pressure would.
      if (pending.length >= 8) await pending.shift();
    }
    await Promise.all(pending);
  });
  results.emitter = await emitter2('EventEmitter2 wildcard emit', 200_000);
  line({
    case: 'summary',
    publishManyEventsPerSec: results.many,
    eventEmitter2EventsPerSec: results.emitter,
    publishManyTarget: 250_000,
    publishManyMeetsTarget: results.many >= 250_000,
    ratioToEventEmitter2: +(results.many / results.emitter).toFixed(3),
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
