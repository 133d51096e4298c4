// migrate, query, stats and archive against a real PostgreSQL schema of their own.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { EventBus } from '@situs/event-bus';
import type { BusEvent } from '@situs/event-bus';
import { TEST_DATABASE_URL, postgresStore } from '../stores';
import { cli, CLI, jsonLines } from './run-cli';

jest.setTimeout(120_000);

type Store = Awaited<ReturnType<typeof postgresStore>>;
const stores: Store[] = [];
afterAll(() => Promise.all(stores.map((s) => s.drop())));
async function freshStore(): Promise<Store> {
  const store = await postgresStore();
  stores.push(store);
  return store;
}

async function tablesOf(schema: string): Promise<string[]> {
  const client = new Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema]);
    return rows.map((r) => r.table_name);
  } finally {
    await client.end();
  }
}

/** A JSON line of the CLI: dates are ISO strings. */
type EventLine = Omit<BusEvent, 'timestamp'> & { timestamp: string };

const version = (JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('migrate', () => {
  it('applies the migrations to an empty schema, says so, and can run again', async () => {
    const store = await freshStore();
    expect(await tablesOf(store.schema)).toEqual([]);
    const first = await cli(['migrate', '--store-url', store.url]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toBe(`migrations of @situs/event-bus ${version} applied; the schema is up to date at ${store.url}\n`);
    expect(await tablesOf(store.schema)).toEqual(expect.arrayContaining(['event_bus_events', 'event_bus_events_archive', 'event_bus_dead_letters']));
    expect(await cli(['migrate'], { EVENT_STORE_URL: store.url })).toMatchObject({ code: 0, stdout: first.stdout, stderr: '' });
    // With a password in the URL (ignored by a trust server): shown masked.
    const withPassword = new URL(store.url);
    if (withPassword.password === '') withPassword.password = 'Sup3rSecret';
    const masked = await cli(['migrate', '--store-url', withPassword.toString()]);
    expect(masked.code).toBe(0);
    expect(masked.stdout).toContain(`${withPassword.username}:***@${withPassword.host}`);
    expect(masked.stdout).not.toContain(withPassword.password);
  });
});

describe('query and stats', () => {
  let store: Store;
  let seeded: BusEvent[];
  beforeAll(async () => {
    store = await freshStore();
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
    const early = await bus.publishMany([
      { type: 'order.placed', payload: { n: 1 }, projectId: 'p1', tenantId: 't1', userId: 'u1' },
      { type: 'order.paid', payload: { n: 2 }, projectId: 'p1', tenantId: 't1', userId: 'u2' },
      { type: 'user.created', payload: { n: 3 }, projectId: 'p2', tenantId: 't2', userId: 'u1' },
    ]);
    // Over one page of the store (1000), for the paging through nextCursor.
    const bulk = await bus.publishMany(Array.from({ length: 1200 }, (_, i) => ({ type: 'log.line', payload: i, projectId: 'bulk' })));
    seeded = [...early, ...bulk] as BusEvent[];
    await bus.close();
  });

  const query = async (...args: string[]) => {
    const result = await cli(['query', '--store-url', store.url, ...args]);
    expect(result.code).toBe(0);
    return { ...result, events: jsonLines<EventLine>(result.stdout) };
  };

  it('prints JSON lines of the events, oldest first, 100 by default', async () => {
    const { events, stderr } = await query();
    expect(events).toHaveLength(100);
    expect(events.map((e) => e.position)).toEqual(seeded.slice(0, 100).map((e) => e.position));
    expect(events[0]).toEqual({
      id: seeded[0].id,
      type: 'order.placed',
      payload: { n: 1 },
      projectId: 'p1',
      tenantId: 't1',
      userId: 'u1',
      position: seeded[0].position,
      timestamp: seeded[0].timestamp.toISOString(),
    });
    expect(stderr).toMatch(/^stopped at --limit 100; continue with --cursor \S+\n$/);
  });

  it('filters by type patterns, project, tenant and user', async () => {
    expect((await query('--type', 'order.*')).events.map((e) => e.type)).toEqual(['order.placed', 'order.paid']);
    expect((await query('--type', 'order.paid', '--type', 'user.*')).events.map((e) => e.type)).toEqual(['order.paid', 'user.created']);
    expect((await query('--project', 'p1')).events.map((e) => e.payload)).toEqual([{ n: 1 }, { n: 2 }]);
    expect((await query('--tenant', 't2')).events.map((e) => e.payload)).toEqual([{ n: 3 }]);
    expect((await query('--user', 'u1')).events.map((e) => e.payload)).toEqual([{ n: 1 }, { n: 3 }]);
    expect((await query('--user', 'u1', '--project', 'p2')).events.map((e) => e.payload)).toEqual([{ n: 3 }]);
    const none = await query('--type', 'nothing.here');
    expect(none).toMatchObject({ stdout: '', stderr: '' });
  });

  it('--since and --until take ISO dates and durations ago', async () => {
    const first = seeded[0].timestamp;
    expect((await query('--until', first.toISOString())).events).toEqual([]);
    expect((await query('--since', first.toISOString(), '--type', 'order.*')).events).toHaveLength(2);
    expect((await query('--since', '1h', '--type', 'user.*')).events).toHaveLength(1);
    expect((await query('--until', '1h')).events).toEqual([]);
    expect((await query('--since', '2000-01-01', '--type', 'order.paid')).events).toHaveLength(1);
  });

  it('--after, --order desc and --limit; pages through nextCursor past one store page', async () => {
    const after = await query('--after', String(seeded[1].position), '--limit', '2');
    expect(after.events.map((e) => e.position)).toEqual([seeded[2].position, seeded[3].position]);
    const desc = await query('--order', 'desc', '--limit', '3');
    expect(desc.events.map((e) => e.position)).toEqual(seeded.slice(-3).reverse().map((e) => e.position));
    const all = await query('--limit', '5000');
    expect(all.events.map((e) => e.position)).toEqual(seeded.map((e) => e.position));
    expect(all.stderr).toBe('');
    const some = await query('--limit', '1100', '--project', 'bulk');
    expect(some.events.map((e) => e.payload)).toEqual(Array.from({ length: 1100 }, (_, i) => i));
  });

  it('--cursor continues where a query stopped', async () => {
    const first = await query('--limit', '2');
    const cursor = /--cursor (\S+)/.exec(first.stderr)?.[1];
    expect(cursor).toBeDefined();
    const next = await query('--limit', '2', '--cursor', cursor as string);
    expect([...first.events, ...next.events].map((e) => e.position)).toEqual(seeded.slice(0, 4).map((e) => e.position));
  });

  it('--archived also reads archived events', async () => {
    const own = await freshStore();
    const bus = await EventBus.open({ storeUrl: own.url, logger: () => undefined });
    await bus.publish({ type: 'old.one', payload: 1 });
    await bus.archive({ olderThan: new Date(Date.now() + 60_000) });
    await bus.publish({ type: 'new.one', payload: 2 });
    await bus.close();
    const live = await cli(['query', '--store-url', own.url]);
    expect(jsonLines<EventLine>(live.stdout).map((e) => e.type)).toEqual(['new.one']);
    const everything = await cli(['query', '--store-url', own.url, '--archived']);
    expect(jsonLines<EventLine>(everything.stdout).map((e) => e.type)).toEqual(['old.one', 'new.one']);
  });

  it('a reader that goes away (| head -1) ends the output quietly, exit 0', async () => {
    const child = spawn(process.execPath, [CLI, 'query', '--limit', '5000', '--store-url', store.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    await once(child.stdout, 'data');
    child.stdout.destroy();
    const [code] = (await once(child, 'close')) as [number | null];
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('stats: the metrics and the store facts as an aligned table, every metrics() field included', async () => {
    const result = await cli(['stats', '--store-url', store.url]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const lines = result.stdout.trimEnd().split('\n');
    const rows = new Map(lines.map((line) => [line.split(/\s+/)[0], line.split(/\s+/).slice(1).join(' ')]));
    // Every field the bus's metrics() has, by its own names (none listed here by hand); what
    // this process did is zero, what describes it (memory, the pool) is what it is.
    const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => undefined });
    const metrics = bus.metrics();
    await bus.close();
    const leaves = Object.entries(metrics).flatMap(([key, value]) =>
      value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value).map((k) => `${key}.${k}`) : [key],
    );
    expect(leaves.length).toBeGreaterThan(10);
    for (const leaf of leaves) expect(rows.has(`metrics.${leaf}`)).toBe(true);
    for (const counter of ['published', 'delivered', 'handlerErrors', 'publishErrors', 'publishSeconds.count', 'webhookPending', 'deadLettered'])
      expect(rows.get(`metrics.${counter}`)).toBe('0');
    expect(Number(rows.get('metrics.processRssBytes'))).toBeGreaterThan(0);
    expect(rows.get('metrics.groups')).toBe('[]');
    expect(rows.get('store.headPosition')).toBe(String(seeded[seeded.length - 1].position));
    expect(rows.get('store.newestEventAt')).toBe(seeded[seeded.length - 1].timestamp.toISOString());
    expect(rows.get('store.oldestLiveEventAt')).toBe(seeded[0].timestamp.toISOString());
    expect(rows.get('webhooks.endpoints')).toBe('0');
    expect(rows.get('deadLetters.dead')).toBe('0');
    // Aligned: the keys padded to one column, the numbers right-aligned in the next.
    const keyWidth = Math.max(...lines.map((l) => l.split(/\s+/)[0].length));
    for (const line of lines) expect(line.slice(0, keyWidth + 2)).toMatch(/^\S+ +$/);
    const numberLines = lines.filter((l) => /^\S+\s+\d+$/.test(l));
    expect(new Set(numberLines.map((l) => l.length)).size).toBe(1);
  });

  it('stats --json: the same as one JSON object', async () => {
    const result = await cli(['stats', '--json', '--store-url', store.url]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const stats = JSON.parse(result.stdout);
    expect(stats).toMatchObject({
      metrics: { published: 0, delivered: 0, subscribers: 0 },
      store: { headPosition: seeded[seeded.length - 1].position },
      webhooks: { endpoints: 0, disabled: 0 },
      deadLetters: { dead: 0 },
    });
  });
});

describe('archive', () => {
  it('piped: a plain line per step, then the count; the events are archived and still queryable', async () => {
    const store = await freshStore();
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
    await bus.publishMany(Array.from({ length: 25 }, (_, i) => ({ type: 'audit.logged', payload: i })));
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = new Date();
    await new Promise((r) => setTimeout(r, 20));
    // Published after the cutoff, so it stays.
    const kept = await bus.publish({ type: 'audit.kept', payload: 'recent' });

    const result = await cli(['archive', '--older-than', cutoff.toISOString(), '--batch-size', '10', '--store-url', store.url]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.split('\n')).toEqual([
      'archived 10 (10 so far)',
      'archived 10 (20 so far)',
      'archived 5 (25 so far)',
      `archived 25 events older than ${cutoff.toISOString()}`,
      '',
    ]);
    expect((await bus.getEvents()).events.map((e) => e.id)).toEqual([kept.id]);
    expect((await bus.getEvents({ includeArchived: true, types: ['audit.logged'], limit: 1000 })).events).toHaveLength(25);

    // Nothing left: no step line, a count of 0. A duration ago works as the cutoff.
    const again = await cli(['archive', '--older-than', '1d', '--store-url', store.url]);
    expect(again).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^archived 0 events older than \S+Z\n$/) });
    const cutoffOfAgain = new Date(/older than (\S+)/.exec(again.stdout)![1]).getTime();
    expect(Math.abs(Date.now() - 86_400_000 - cutoffOfAgain)).toBeLessThan(3_600_000);
    await bus.close();
  });

  it('archives every older event by default steps of 1000', async () => {
    const store = await freshStore();
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
    await bus.publishMany(Array.from({ length: 1500 }, (_, i) => ({ type: 'audit.logged', payload: i })));
    await bus.close();
    const result = await cli(['archive', '--older-than', new Date(Date.now() + 60_000).toISOString(), '--store-url', store.url]);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').slice(0, 3)).toEqual(['archived 1000 (1000 so far)', 'archived 500 (1500 so far)', expect.stringMatching(/^archived 1500 events older than /)]);
  });

  it('on a terminal: a progress bar instead of the step lines, then the count', async () => {
    const store = await freshStore();
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
    await bus.publishMany(Array.from({ length: 1500 }, (_, i) => ({ type: 'audit.logged', payload: i })));
    await bus.close();
    const cutoff = new Date(Date.now() + 60_000).toISOString();
    // script(1) (util-linux) runs the CLI on a pseudo-terminal: stdout is a TTY there.
    const result = spawnSync('script', ['-qec', `"${process.execPath}" "${CLI}" archive --older-than ${cutoff}`, '/dev/null'], {
      env: { ...process.env, EVENT_STORE_URL: store.url },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(0);
    const screen = result.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');
    expect(screen).toMatch(/archiving \[.*\] 100% \| 1500\/1500 events/);
    expect(screen).toContain(`archived 1500 events older than ${cutoff}`);
    expect(screen).not.toContain('so far');
  });
});
