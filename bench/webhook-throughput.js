// Signed webhook deliveries per second to a local receiver, side by side in the same run with a
// plain Node worker (fetch + node:crypto HMAC, the same concurrency). The receiver runs in its own
// process and answers 204 at once; it counts requests whose signature verifies.
//   bus:      publishMany the events on PostgreSQL with one endpoint registered; the outbox rows
//             are written with the events, Rust workers claim, sign, POST and record them.
//   baseline: the same event bodies already in memory (no store, no outbox, no bookkeeping),
//             signed and POSTed by a Node worker pool.
// Prints one JSON line per measurement. Run: npm run bench:webhooks
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const { randomUUID } = require('node:crypto');
const { EventBus } = require('@situs/event-bus');

const { withSchema } = require('./lib/postgres');
const N = Number(process.env.BENCH_WEBHOOKS || 20000);
const CONCURRENCY = Number(process.env.BENCH_WEBHOOK_CONCURRENCY || 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);

function line(fields) {
  console.log(JSON.stringify({ bench: 'webhook-throughput', ...fields }));
}

/** The receiver process: verifies each signature (Standard Webhooks, v1) and counts. */
const RECEIVER = `
  const http = require('node:http');
  const crypto = require('node:crypto');
  let key = null, ok = 0, bad = 0, first = 0, last = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const id = req.headers['webhook-id'], ts = req.headers['webhook-timestamp'];
      const expected = crypto.createHmac('sha256', key).update(id + '.' + ts + '.' + body).digest('base64');
      const sigs = String(req.headers['webhook-signature'] || '').split(' ').map((s) => s.slice(3));
      if (sigs.includes(expected)) ok++; else bad++;
      const now = performance.timeOrigin + performance.now();
      if (!first) first = now;
      last = now;
      res.writeHead(204);
      res.end();
    });
  });
  server.keepAliveTimeout = 60000;
  process.on('message', (m) => {
    if (m.secret) { key = Buffer.from(m.secret.slice(6), 'base64'); ok = bad = first = last = 0; process.send({ reset: true }); }
    if (m.count) process.send({ ok, bad, first, last });
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));`;

function startReceiver() {
  const child = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = [];
  child.on('message', (m) => waiting.shift()?.(m));
  const ask = (msg) => new Promise((resolve) => {
    waiting.push(resolve);
    if (msg) child.send(msg);
  });
  return { child, ask };
}

async function waitFor(receiver, n) {
  for (;;) {
    const c = await receiver.ask({ count: true });
    if (c.ok + c.bad >= n) return c;
    await new Promise((r) => setTimeout(r, 20));
  }
}


const event = (i) => ({ type: 'order.placed', payload: { id: i, total: i % 997, items: ['a', 'b'] }, projectId: `p${i % 50}` });

async function busRound(receiver, url) {
  return withSchema(async (storeUrl) => {
    const bus = await EventBus.open({
      storeUrl,
      logger: () => {},
      webhook: { allowHttp: true, allowPrivateNetworks: true, concurrency: CONCURRENCY, perEndpointConcurrency: CONCURRENCY, pollIntervalMs: 50 },
    });
    const endpoint = await bus.webhooks.register({ url, events: ['order.*'] });
    await receiver.ask({ secret: endpoint.secret });
    const started = performance.timeOrigin + performance.now();
    for (let i = 0; i < N; i += 500) {
      await bus.publishMany(Array.from({ length: Math.min(500, N - i) }, (_, j) => event(i + j)));
    }
    const published = performance.timeOrigin + performance.now();
    const c = await waitFor(receiver, N);
    const seconds = (c.last - started) / 1000;
    await bus.close();
    return { ok: c.ok, bad: c.bad, seconds, publishSeconds: (published - started) / 1000 };
  });
}

async function nodeRound(receiver, url) {
  const secret = 'whsec_' + crypto.randomBytes(32).toString('base64');
  const key = Buffer.from(secret.slice(6), 'base64');
  await receiver.ask({ secret });
  const bodies = Array.from({ length: N }, (_, i) =>
    JSON.stringify({ id: randomUUID(), ...event(i), timestamp: new Date().toISOString(), position: i + 1 }),
  );
  const started = performance.timeOrigin + performance.now();
  let next = 0;
  const worker = async () => {
    while (next < bodies.length) {
      const i = next++;
      const id = `msg_${i}`;
      const ts = Math.floor(Date.now() / 1000);
      const body = bodies[i];
      const sig = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${sig}` },
        body,
      });
      await res.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const c = await waitFor(receiver, N);
  return { ok: c.ok, bad: c.bad, seconds: (c.last - started) / 1000 };
}

(async () => {
  const receiver = startReceiver();
  const { port } = await receiver.ask();
  const url = `http://127.0.0.1:${port}/hook`;
  const results = { bus: [], node: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    const n = await nodeRound(receiver, url);
    results.node.push(N / n.seconds);
    line({ case: 'node worker: fetch + node:crypto HMAC, in-memory events', round, events: N, concurrency: CONCURRENCY, verified: n.ok, refused: n.bad, perSecond: Math.round(N / n.seconds) });
    const b = await busRound(receiver, url);
    results.bus.push(N / b.seconds);
    line({ case: 'bus on PostgreSQL: outbox + Rust workers', round, events: N, concurrency: CONCURRENCY, verified: b.ok, refused: b.bad, perSecond: Math.round(N / b.seconds), publishSeconds: Number(b.publishSeconds.toFixed(2)) });
  }
  const best = (xs) => Math.max(...xs);
  // Each round's bus and Node cases ran back to back under the same conditions.
  const ratios = results.bus.map((b, i) => b / results.node[i]).sort((a, b) => a - b);
  line({
    summary: true,
    busPerSecond: Math.round(best(results.bus)),
    nodePerSecond: Math.round(best(results.node)),
    bestOverBest: Number((best(results.bus) / best(results.node)).toFixed(2)),
    perRoundRatios: ratios.map((r) => Number(r.toFixed(2))),
    medianRatio: Number(ratios[Math.floor(ratios.length / 2)].toFixed(2)),
    target: '>= 5000/s and >= 3x the Node worker',
  });
  receiver.child.kill();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
