import { spawn } from 'node:child_process';
import path from 'node:path';
import { EventBus } from '@situs/event-bus';
import { sqliteStore } from '../stores';

jest.setTimeout(60_000);

function run(storeUrl: string, count: number, mode: 'kill' | 'exit'): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'shutdown-app.mjs'), storeUrl, String(count), mode], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // No one kills it from here: it must end by itself.
    const guard = setTimeout(() => reject(new Error(`the app did not exit by itself: ${stderr}`)), 30_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stderr });
    });
  });
}

async function storedCount(url: string): Promise<{ count: number; types: Set<string>; ns: Set<number> }> {
  const bus = await EventBus.open({ storeUrl: url, logger: () => undefined });
  const events = [];
  let cursor: string | undefined;
  do {
    const page = await bus.getEvents({ limit: 1000, cursor });
    events.push(...page.events);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  await bus.close();
  return {
    count: events.length,
    types: new Set(events.map((e) => e.type)),
    ns: new Set(events.map((e) => (e.payload as { n: number }).n)),
  };
}

describe('enableShutdownHooks: SIGTERM drains fire-and-forget publishes (SQLite)', () => {
  const COUNT = 3000;

  it('with useProcessExit the app stores every publish and exits 0 by itself', async () => {
    const store = sqliteStore();
    const result = await run(store.url, COUNT, 'exit');
    expect(result).toEqual({ code: 0, signal: null, stderr: '' });
    const stored = await storedCount(store.url);
    expect(stored.count).toBe(COUNT);
    expect(stored.ns.size).toBe(COUNT);
    expect([...stored.types]).toEqual(['order.placed']);
    await store.drop();
  });

  it("with Nest's default (the signal is re-raised after the hooks) every publish is stored too", async () => {
    const store = sqliteStore();
    const result = await run(store.url, COUNT, 'kill');
    expect(result).toEqual({ code: null, signal: 'SIGTERM', stderr: '' });
    expect((await storedCount(store.url)).count).toBe(COUNT);
    await store.drop();
  });
});
