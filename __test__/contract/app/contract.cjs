// The contract every runner runs: the package as a user installs it (the packed tarballs), its
// everyday calls awaited one after another, as tests in users' apps await them. Written once;
// each runner's file registers these cases, loading the package by `require` or `import`.
//
// Environment (set by ../run.js): CONTRACT_POSTGRES_URL, a schema of its own on the test server.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const { spawnSync } = require('node:child_process');

const quiet = () => {};

/** A local webhook receiver on 127.0.0.1; resolves each request as it arrives. */
function receiver() {
  const received = [];
  let notify = () => {};
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(204).end();
      notify();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}/hook`,
        next: () =>
          received.length > 0 ? Promise.resolve(received.shift()) : new Promise((r) => (notify = () => r(received.shift()))),
        close: () => new Promise((r) => server.close(r)),
      }),
    ),
  );
}

/** Reads an SSE response until a message with an `id:` line arrives; returns its fields. */
async function firstMessage(body) {
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true });
    for (const block of text.split('\n\n').slice(0, -1)) {
      const lines = block.split('\n');
      const field = (name) => lines.find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim();
      // The first block is the `: connected` comment and the `retry:` hint; an event has data.
      if (field('id') !== undefined && field('data') !== undefined) {
        return { id: field('id'), event: field('event'), data: JSON.parse(field('data')) };
      }
    }
  }
  throw new Error('the stream ended before a message');
}

/** The cases, for the package as loaded by the runner's file (`require` or `import`). */
module.exports = function contract({ EventBus, EventBusError }) {
  const open = (options = {}) => EventBus.open({ storeUrl: 'memory:', logger: quiet, ...options });
  return [
    {
      name: 'open and close',
      async run() {
        const bus = await open();
        assert.equal(bus.closed, false);
        await bus.close();
        assert.equal(bus.closed, true);
        await assert.rejects(bus.publish({ type: 'a.b', payload: 1 }), { code: 'CLOSED' });
      },
    },
    {
      name: 'publish and publishMany resolve with the stored events',
      async run() {
        const bus = await open();
        const e = await bus.publish({ type: 'project.created', payload: { name: 'Apollo' }, projectId: 'p1' });
        assert.equal(e.position, 1);
        assert.equal(e.stored, true);
        assert.ok(e.timestamp instanceof Date);
        assert.match(e.id, /^[0-9a-f-]{36}$/);
        const many = await bus.publishMany([
          { type: 'a.b', payload: 1 },
          { type: 'a.c', payload: 2 },
        ]);
        assert.deepEqual(
          many.map((m) => m.position),
          [2, 3],
        );
        await bus.close();
      },
    },
    {
      name: 'bad input rejects with an EventBusError naming the field',
      async run() {
        const bus = await open();
        await assert.rejects(bus.publish({ type: 'Not A Type', payload: 1 }), (err) => {
          assert.ok(err instanceof EventBusError);
          assert.equal(err.code, 'INVALID_EVENT');
          assert.match(err.message, /type/);
          return true;
        });
        assert.equal((await bus.getEvents()).events.length, 0);
        await bus.close();
      },
    },
    {
      name: 'subscribe receives each matching event once, in order',
      async run() {
        const bus = await open();
        const seen = [];
        let done;
        const all = new Promise((r) => (done = r));
        const sub = bus.subscribe('order.*', async (e) => {
          seen.push(e.payload);
          if (seen.length === 3) done();
        });
        for (let i = 0; i < 3; i++) await bus.publish({ type: 'order.placed', payload: i });
        await bus.publish({ type: 'user.created', payload: 'other' });
        await all;
        sub.unsubscribe();
        assert.deepEqual(seen, [0, 1, 2]);
        await bus.close();
      },
    },
    {
      name: 'getEvents filters and pages',
      async run() {
        const bus = await open();
        for (let i = 0; i < 5; i++) await bus.publish({ type: i % 2 ? 'a.odd' : 'a.even', payload: i, projectId: 'p' });
        const page = await bus.getEvents({ types: ['a.even'], limit: 2 });
        assert.deepEqual(
          page.events.map((e) => e.payload),
          [0, 2],
        );
        assert.equal(typeof page.nextCursor, 'string');
        const rest = await bus.getEvents({ types: ['a.even'], cursor: page.nextCursor });
        assert.deepEqual(
          rest.events.map((e) => e.payload),
          [4],
        );
        await bus.close();
      },
    },
    {
      name: 'a consumer group handles every event on SQLite',
      async run() {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-contract-'));
        const bus = await open({ storeUrl: `sqlite://${path.join(dir, 'events.db')}` });
        try {
          const handled = new Set();
          let done;
          const all = new Promise((r) => (done = r));
          bus.subscribe(
            'job.*',
            async (e) => {
              handled.add(e.payload);
              if (handled.size === 10) done();
            },
            { group: 'workers', from: 'beginning' },
          );
          for (let i = 0; i < 10; i++) await bus.publish({ type: 'job.queued', payload: i, projectId: `p${i % 3}` });
          await all;
          assert.equal(handled.size, 10);
        } finally {
          await bus.close();
          fs.rmSync(dir, { recursive: true, force: true });
        }
      },
    },
    {
      name: 'a webhook endpoint receives a signed delivery',
      async run() {
        const hook = await receiver();
        const bus = await open({ webhook: { allowHttp: true, allowPrivateNetworks: true } });
        try {
          const { id, secret } = await bus.webhooks.register({ url: hook.url, events: ['invoice.*'] });
          assert.match(secret, /^whsec_/);
          assert.equal((await bus.webhooks.list()).length, 1);
          const e = await bus.publish({ type: 'invoice.paid', payload: { amount: 10 } });
          const request = await hook.next();
          assert.equal(request.body.id, e.id);
          assert.match(request.headers['webhook-id'], /^msg_/);
          assert.match(request.headers['webhook-signature'], /^v1,/);
          await bus.webhooks.remove(id);
        } finally {
          await bus.close();
          await hook.close();
        }
      },
    },
    {
      name: 'the SSE server streams a published event',
      async run() {
        const bus = await open();
        const server = await bus.sse.listen({ host: '127.0.0.1', port: 0 });
        const aborter = new AbortController();
        try {
          const res = await fetch(`${server.url}?types=project.*`, { signal: aborter.signal });
          assert.equal(res.status, 200);
          assert.match(res.headers.get('content-type'), /text\/event-stream/);
          const reading = firstMessage(res.body);
          const e = await bus.publish({ type: 'project.updated', payload: { n: 1 } });
          const message = await reading;
          assert.equal(message.id, String(e.position));
          assert.equal(message.event, 'project.updated');
          assert.equal(message.data.id, e.id);
        } finally {
          aborter.abort();
          await server.close();
          await bus.close();
        }
      },
    },
    {
      name: 'a script that publishes and never closes settles, handles its events, then exits',
      async run() {
        const r = spawnSync(process.execPath, [path.join(__dirname, 'scripts', 'ends-by-itself.cjs')], {
          encoding: 'utf8',
          // A guard against a hang, not a timing assertion.
          timeout: 60_000,
        });
        assert.equal(r.status, 0, r.stderr);
        const lines = r.stdout.trim().split('\n');
        // Every publish settled and every event was handled before Node first went idle.
        assert.deepEqual(lines.filter((l) => l.startsWith('settled')).sort(), ['settled 1', 'settled 2', 'settled 3']);
        assert.deepEqual(lines.filter((l) => l.startsWith('handled')), ['handled 1', 'handled 2', 'handled 3']);
        assert.equal(lines.indexOf('beforeExit'), lines.length - 1, r.stdout);
      },
    },
    {
      name: 'PostgreSQL: publish, subscribe and read back',
      async run() {
        const url = process.env.CONTRACT_POSTGRES_URL;
        assert.ok(url, 'CONTRACT_POSTGRES_URL is not set (run.js sets it)');
        const bus = await open({ storeUrl: url });
        try {
          let got;
          const delivered = new Promise((r) => (got = r));
          bus.subscribe('pg.*', (e) => got(e));
          const e = await bus.publish({ type: 'pg.checked', payload: { ok: true }, tenantId: 't1' });
          assert.equal((await delivered).id, e.id);
          const { events } = await bus.getEvents({ tenantId: 't1' });
          assert.ok(events.some((x) => x.id === e.id));
        } finally {
          await bus.close();
        }
      },
    },
  ];
};
