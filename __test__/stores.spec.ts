import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { EventBus, EventBusError } from '@situs/event-bus';
import { postgresStore, sqliteStore } from './stores';

const backends = [
  ['sqlite', async () => sqliteStore()],
  ['postgres', postgresStore],
] as const;

describe.each(backends)('%s store', (_name, makeStore) => {
  let store: { url: string; drop: () => Promise<void> };
  beforeAll(async () => {
    store = await makeStore();
  });
  afterAll(() => store.drop());

  it('stores durably: a reopened bus reads what an earlier one committed, and ids stay idempotent', async () => {
    const first = await EventBus.open({ storeUrl: store.url, logger: () => {} });
    const seen: number[] = [];
    first.subscribe('order.*', (e) => {
      seen.push(e.position);
    });
    const a = await first.publish({ type: 'order.placed', payload: { total: 12.5, items: ['x'] }, projectId: 'p1', tenantId: 't1' });
    const many = await first.publishMany([
      { type: 'order.paid', payload: { total: 12.5 }, projectId: 'p1' },
      { type: 'order.shipped', payload: null, userId: 'u1', metadata: { carrier: 'dhl' } },
    ]);
    await first.close();
    expect(seen).toEqual([a.position, ...many.map((e) => e.position)]);

    const second = await EventBus.open({ storeUrl: store.url, logger: () => {} });
    const { events } = await second.getEvents({ types: ['order.*'] });
    expect(events.map((e) => e.type)).toEqual(['order.placed', 'order.paid', 'order.shipped']);
    expect(events[0]).toMatchObject({ id: a.id, payload: { total: 12.5, items: ['x'] }, projectId: 'p1', tenantId: 't1', position: a.position });
    expect(events[0].timestamp).toEqual(a.timestamp);
    expect(events[2]).toMatchObject({ payload: null, userId: 'u1', metadata: { carrier: 'dhl' } });
    const retry = await second.publish({ id: a.id, type: 'order.placed', payload: { items: ['x'], total: 12.5 }, projectId: 'p1', tenantId: 't1' });
    expect(retry.position).toBe(a.position);
    await expect(second.publish({ id: a.id, type: 'order.placed', payload: {} })).rejects.toMatchObject({ code: 'DUPLICATE_EVENT' });
    await second.close();
  });

  it('publishers that await each publish share commits (they come back together, not in alternating halves)', async () => {
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => {} });
    const publishers = 16;
    const rounds = 40;
    const before = bus.metrics().batches;
    let n = 0;
    await Promise.all(
      Array.from({ length: publishers }, async () => {
        for (let i = 0; i < rounds; i++) await bus.publish({ type: 'load.tick', payload: n++ });
      }),
    );
    const commits = bus.metrics().batches - before;
    await bus.close();
    // Answered callers are waited for (a few ms at most), so a round is one commit, give or
    // take a split when the machine stalls; alternating groups would make it 2 or more.
    expect((publishers * rounds) / commits).toBeGreaterThan(12);
  });

  it('archives old events, still found with includeArchived', async () => {
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => {} });
    const before = (await bus.getEvents({ limit: 1000 })).events.length;
    await bus.publishMany(Array.from({ length: 30 }, (_, i) => ({ type: 'log.line', payload: i })));
    const cutoff = new Date(Date.now() + 1000);
    const { archived } = await bus.archive({ olderThan: cutoff });
    expect(archived).toBe(before + 30);
    expect((await bus.getEvents()).events).toEqual([]);
    const all = await bus.getEvents({ includeArchived: true, types: ['log.line'], order: 'desc', limit: 5 });
    expect(all.events.map((e) => e.payload)).toEqual([29, 28, 27, 26, 25]);
    expect(await bus.archive({ olderThan: cutoff.toISOString() })).toEqual({ archived: 0 });
    await expect(bus.archive({ olderThan: 'yesterday' })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('olderThan') });
    await bus.close();
  });

  it('archives at most `limit` events a call, the oldest first, so a caller can go step by step', async () => {
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => {} });
    await bus.publishMany(Array.from({ length: 25 }, (_, i) => ({ type: 'step.line', payload: i })));
    const cutoff = new Date(Date.now() + 1000);
    const live = async () => (await bus.getEvents({ limit: 1000 })).events.map((e) => e.position);
    const before = await live();
    expect(before.length).toBeGreaterThanOrEqual(25);
    expect(await bus.archive({ olderThan: cutoff, limit: 10 })).toEqual({ archived: 10 });
    expect(await live()).toEqual(before.slice(10));
    const steps: number[] = [];
    for (let moved = 10; moved === 10; ) {
      moved = (await bus.archive({ olderThan: cutoff.toISOString(), limit: 10 })).archived;
      steps.push(moved);
    }
    expect(steps.reduce((a, b) => a + b, 0)).toBe(before.length - 10);
    expect(await live()).toEqual([]);
    for (const limit of [0, -1, 2.5, Number.NaN]) {
      await expect(bus.archive({ olderThan: cutoff, limit })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('limit') });
    }
    await expect(bus.archive({ olderThan: cutoff, limit: '5' as unknown as number })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: 'limit must be a number' });
    await bus.close();
  });
});

it('opens sqlite://./event-bus.db when neither storeUrl nor EVENT_STORE_URL is given', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-eb-default-'));
  const env = { ...process.env };
  delete env.EVENT_STORE_URL;
  const script = `
    const { EventBus } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    (async () => {
      const bus = await EventBus.open();
      const e = await bus.publish({ type: 'a.b', payload: 1 });
      await bus.close();
      console.log(e.position);
    })();`;
  const run = () => spawnSync(process.execPath, ['-e', script], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
  const first = run();
  const second = run();
  expect(first.stderr).toBe('');
  expect([first.stdout.trim(), second.stdout.trim()]).toEqual(['1', '2']);
  expect(fs.existsSync(path.join(dir, 'event-bus.db'))).toBe(true);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.each(backends)('%s: two processes opening the same fresh database at once', (_name, makeStore) => {
  it('both migrate and publish', async () => {
    const store = await makeStore();
    const script = `
      const { EventBus } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
      (async () => {
        const bus = await EventBus.open({ storeUrl: process.env.URL, logger: () => {} });
        const e = await bus.publish({ type: 'proc.started', payload: process.pid });
        await bus.close();
        console.log(e.position);
      })().catch((err) => { console.error(err.code, err.message); process.exit(1); });`;
    const { spawn } = await import('node:child_process');
    const run = () =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, URL: store.url } });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('close', (code) => resolve({ code, out, err }));
      });
    const results = await Promise.all([run(), run()]);
    expect(results.map((r) => [r.code, r.err])).toEqual([
      [0, ''],
      [0, ''],
    ]);
    expect(results.map((r) => Number(r.out.trim())).sort((a, b) => a - b)).toEqual([1, 2]);
    await store.drop();
  });
});

describe.each(backends)('%s: several instances on one database', (_name, makeStore) => {
  it('every instance sees every event once, in position order; from replays then goes live', async () => {
    const store = await makeStore();
    const open = () => EventBus.open({ storeUrl: store.url, logger: () => {}, delivery: { pollIntervalMs: 50 } });
    const [a, b] = await Promise.all([open(), open()]);
    const seenA: number[] = [];
    const seenB: number[] = [];
    a.subscribe('**', (e) => {
      seenA.push(e.position);
    });
    b.subscribe('**', (e) => {
      seenB.push(e.position);
    });
    const publish = (bus: EventBus, who: string) =>
      (async () => {
        const positions: number[] = [];
        for (let i = 0; i < 20; i++) positions.push((await bus.publish({ type: 'x.y', payload: { who, i } })).position as number);
        return positions;
      })();
    const acked = (await Promise.all([publish(a, 'a'), publish(b, 'b')])).flat().sort((x, y) => x - y);
    const replayed: number[] = [];
    b.subscribe('x.*', (e) => {
      replayed.push(e.position);
    }, { from: 'beginning' });
    const last = await a.publish({ type: 'x.z', payload: 'after' });
    const all = [...acked, last.position as number];
    for (let i = 0; i < 400 && (seenA.length < 41 || seenB.length < 41 || replayed.length < 41); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(seenA).toEqual(all);
    expect(seenB).toEqual(all);
    expect(replayed).toEqual(all);
    await Promise.all([a.close(), b.close()]);
    await store.drop();
  });
});

describe('postgres: open names why it cannot connect (issue 12 #5)', () => {
  it('a refused port: STORE_UNAVAILABLE "connection refused" at once, no password, no acquire-timeout wait', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as net.AddressInfo;
        server.close(() => resolve(free));
      });
    });
    const started = Date.now();
    const err = await EventBus.open({
      storeUrl: `postgres://postgres:s3cret@127.0.0.1:${port}/test`,
      store: { acquireTimeoutMs: 10_000 },
      logger: () => undefined,
    }).catch((e: unknown) => e);
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(EventBusError);
    expect((err as EventBusError).code).toBe('STORE_UNAVAILABLE');
    expect((err as EventBusError).message).toBe(`cannot connect to PostgreSQL at 127.0.0.1:${port}: connection refused`);
    expect(took).toBeLessThan(5000);
  });

  it('a missing database: INVALID_CONFIG naming it, without the server\'s source line', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
    url.pathname = '/no_such_database_eb';
    const err = await EventBus.open({ storeUrl: url.toString(), logger: () => undefined }).catch((e: unknown) => e);
    expect((err as EventBusError).code).toBe('INVALID_CONFIG');
    expect((err as EventBusError).message).toBe(
      `cannot connect to PostgreSQL at ${url.hostname}:${url.port || 5432}: database "no_such_database_eb" does not exist`,
    );
  });
});
