import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventBus } from '@situs/event-bus';
import { deferred, openBus } from './helpers';

const root = path.resolve(__dirname, '..');

/** Runs a script in a fresh Node process (the package resolved by its name, as users have it). */
function runNode(source: string, type: 'commonjs' | 'module' = 'commonjs') {
  const result = spawnSync(process.execPath, [`--input-type=${type}`, '-e', source], {
    cwd: root,
    encoding: 'utf8',
    // A guard against a hang, not a timing assertion: a process that does not exit by itself fails.
    timeout: 60_000,
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

describe('close', () => {
  it('drains pending publishes and deliveries, then refuses calls with CLOSED', async () => {
    const { bus } = await openBus();
    const gate = deferred();
    const seen: number[] = [];
    bus.subscribe('**', async (e) => {
      await gate.promise;
      seen.push(e.payload as number);
    });
    const pending = Array.from({ length: 100 }, (_, i) => bus.publish({ type: 'a.b', payload: i }));
    const closing = bus.close();
    setTimeout(gate.resolve, 20);
    await closing;
    const results = await Promise.allSettled(pending);
    // Publishes already in flight when close was called complete, and their events were delivered.
    const stored = results.filter((r) => r.status === 'fulfilled').length;
    expect(stored).toBe(100);
    expect(seen).toHaveLength(stored);
    expect(bus.closed).toBe(true);
    await expect(bus.publish({ type: 'a.b', payload: 1 })).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(bus.publishMany([{ type: 'a.b', payload: 1 }])).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(bus.getEvents()).rejects.toMatchObject({ code: 'CLOSED' });
    expect(() => bus.subscribe('**', () => {})).toThrow(expect.objectContaining({ code: 'CLOSED' }));
    expect(() => bus.use((e) => e)).toThrow(expect.objectContaining({ code: 'CLOSED' }));
    await bus.close(); // idempotent
  });

  it('a middleware in flight during close finishes its publish', async () => {
    const { bus } = await openBus();
    const gate = deferred();
    bus.use(async (e) => {
      await gate.promise;
      return e;
    });
    const publishing = bus.publish({ type: 'a.b', payload: 1 });
    const closing = bus.close();
    gate.resolve();
    await expect(publishing).resolves.toMatchObject({ stored: true });
    await closing;
  });
});

describe('process exit', () => {
  it('Node exits by itself with an open bus, a subscriber, middleware and a logger', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      (async () => {
        const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
        bus.subscribe('**', async () => {});
        bus.use(async (e) => e);
        await bus.publish({ type: 'a.b', payload: 1 });
        console.log('published');
      })();
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout).toContain('published');
  });

  it('Node exits after close, with every delivery made before close resolved', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      (async () => {
        const bus = await EventBus.open({ storeUrl: 'memory:' });
        let n = 0;
        bus.subscribe('**', async () => { await new Promise((r) => setTimeout(r, 1)); n++; });
        await bus.publishMany(Array.from({ length: 50 }, (_, i) => ({ type: 'a.b', payload: i })));
        await bus.close();
        console.log('delivered', n);
      })();
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout).toContain('delivered 50');
  });

  it('works when imported from an ES module', () => {
    const r = runNode(
      `
      import { EventBus, EventType, EventBusError } from '@situs/event-bus';
      const bus = await EventBus.open({ storeUrl: 'memory:' });
      const e = await bus.publish({ type: EventType.USER_CREATED, payload: { id: 1 } });
      const err = await bus.publish({ type: 'bad', payload: 1 }).catch((x) => x);
      await bus.close();
      console.log(e.type, e.position, err instanceof EventBusError, err.code);
    `,
      'module',
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('user.created 1 true INVALID_EVENT');
  });
});

describe('logger', () => {
  it('receives level, target, message and fields from the Rust core, filtered by logLevel', async () => {
    const records: Array<{ level: string; target: string; message: string; fields: Record<string, unknown> }> = [];
    const bus = await EventBus.open({ storeUrl: 'memory:', logLevel: 'debug', logger: (r) => records.push(r) });
    const e = await bus.publish({ type: 'a.b', payload: 1, projectId: 'p1' });
    await bus.close();
    expect(records).toContainEqual(
      expect.objectContaining({ level: 'info', message: 'event bus opened', target: expect.stringContaining('situs_event_bus') }),
    );
    expect(records).toContainEqual({
      level: 'debug',
      target: 'situs_event_bus::middleware::logging',
      message: 'publishing event',
      fields: { event_type: 'a.b', event_id: e.id, project_id: 'p1' },
    });
    const quiet: unknown[] = [];
    const warnOnly = await EventBus.open({ storeUrl: 'memory:', logLevel: 'warn', logger: (r) => quiet.push(r) });
    await warnOnly.publish({ type: 'a.b', payload: 1 });
    await warnOnly.close();
    expect(quiet).toEqual([]);
  });

  it('a logger that throws does not break the bus', async () => {
    const bus = await EventBus.open({
      storeUrl: 'memory:',
      logLevel: 'trace',
      logger: () => {
        throw new Error('logger down');
      },
    });
    expect((await bus.publish({ type: 'a.b', payload: 1 })).stored).toBe(true);
    await bus.close();
  });
});

describe('getEvents', () => {
  it('pages with an opaque cursor, filters and orders', async () => {
    const { bus } = await openBus();
    const events = await bus.publishMany(
      Array.from({ length: 30 }, (_, i) => ({
        type: i % 3 === 0 ? 'user.created' : 'project.updated',
        payload: i,
        projectId: i % 2 === 0 ? 'even' : 'odd',
        userId: `u${i % 4}`,
      })),
    );
    const collected: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await bus.getEvents({ projectId: 'even', limit: 4, cursor });
      collected.push(...page.events.map((e) => e.payload as number));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(collected).toEqual(Array.from({ length: 15 }, (_, i) => i * 2));

    const desc = await bus.getEvents({ types: ['user.*'], order: 'desc', limit: 3 });
    expect(desc.events.map((e) => e.payload)).toEqual([27, 24, 21]);
    const next = await bus.getEvents({ types: ['user.*'], order: 'desc', limit: 3, cursor: desc.nextCursor! });
    expect(next.events.map((e) => e.payload)).toEqual([18, 15, 12]);

    const after = await bus.getEvents({ afterPosition: events[25].position as number, userId: 'u2' });
    expect(after.events.map((e) => e.payload)).toEqual([26]);
    const byProject = await bus.getEventsByProject('odd', { limit: 2 });
    expect(byProject.events.map((e) => e.payload)).toEqual([1, 3]);
    const timed = await bus.getEvents({ since: events[0].timestamp, until: new Date(Date.now() + 60_000), limit: 1000 });
    expect(timed.events).toHaveLength(30);
    expect((await bus.getEvents({ until: events[0].timestamp })).events).toEqual([]);
    await bus.close();
  });
});

describe('delivery before exit', () => {
  it('Node stays alive until every publish settles, even when nothing awaits them', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      let settled = 0;
      process.on('exit', () => console.log('settled', settled));
      EventBus.open({ storeUrl: 'memory:' }).then((bus) => {
        for (let i = 0; i < 1000; i++) bus.publish({ type: 'a.b', payload: i }).then(() => settled++);
        bus.publish({ type: 'Not A Type', payload: 1 }).catch((e) => console.log('rejected', e.code));
      });
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim().split('\n').sort()).toEqual(['rejected INVALID_EVENT', 'settled 1000']);
  });

  it('pending work holds Node open by a ref\'d handle: a beforeExit listener never sees it pending', () => {
    // Test runners (node:test), process managers and users listen on beforeExit too, often first:
    // they must never see an empty loop while a publish is pending or events wait for handlers.
    const r = runNode(`
      let settled = 0;
      let handled = 0;
      process.on('beforeExit', () => console.log('beforeExit', settled, handled));
      const { EventBus } = require('@situs/event-bus');
      EventBus.open({ storeUrl: 'memory:', logger: () => {} }).then((bus) => {
        bus.subscribe('**', async () => { await null; handled++; });
        for (let i = 0; i < 200; i++) bus.publish({ type: 'a.b', payload: i }).then(() => settled++);
      });
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim().split('\n')[0]).toBe('beforeExit 200 200');
  });

  it('a consumer group member keeps Node alive while it handles events just committed', () => {
    const r = runNode(`
      let handled = 0;
      process.on('beforeExit', () => console.log('beforeExit', handled));
      const { EventBus } = require('@situs/event-bus');
      EventBus.open({ storeUrl: 'memory:', logger: () => {} }).then(async (bus) => {
        bus.subscribe('job.*', async () => { await null; handled++; }, { group: 'workers' });
        for (let i = 0; i < 50; i++) await bus.publish({ type: 'job.queued', payload: i, projectId: 'p' + (i % 5) });
      });
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim().split('\n')[0]).toBe('beforeExit 50');
  });

  it('an awaited publish under node --test is not cancelled', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-node-test-'));
    const file = path.join(dir, 'publish.test.js');
    fs.writeFileSync(
      file,
      `const test = require('node:test');
       const assert = require('node:assert');
       const { EventBus } = require(${JSON.stringify(root)});
       test('publish', async () => {
         const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
         assert.equal((await bus.publish({ type: 'a.b', payload: 1 })).position, 1);
         assert.equal((await bus.getEvents()).events.length, 1);
         await bus.close();
       });`,
    );
    try {
      const r = spawnSync(process.execPath, ['--test', file], { encoding: 'utf8', timeout: 60_000 });
      expect(r.stdout).toContain('# pass 1');
      expect(r.stdout).toContain('# cancelled 0');
      expect(r.status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a listening SSE server keeps Node alive until closed, unless unref()ed', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      (async () => {
        const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
        const server = await bus.sse.listen({ host: '127.0.0.1', port: 0 });
        const idle = await bus.sse.listen({ host: '127.0.0.1', port: 0 });
        idle.unref();
        // An unref'd timer: only the first server can keep Node alive until it fires.
        setTimeout(async () => { await server.close(); console.log('closed'); }, 300).unref();
      })();
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim()).toBe('closed');
  });

  it('close() resolves after every publish made before it has settled', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      (async () => {
        const bus = await EventBus.open({ storeUrl: 'memory:' });
        let settled = 0;
        for (let i = 0; i < 500; i++) bus.publish({ type: 'a.b', payload: i }).then(() => settled++);
        await bus.close();
        console.log('after close', settled);
      })();
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim()).toBe('after close 500');
  });

  it('Node stays alive until every committed event is handled, then exits without close()', () => {
    const r = runNode(`
      const { EventBus } = require('@situs/event-bus');
      let handled = 0;
      process.on('exit', () => console.log('handled', handled));
      (async () => {
        const bus = await EventBus.open({ storeUrl: 'memory:' });
        bus.subscribe('**', async () => { await new Promise((r) => setImmediate(r)); handled++; });
        bus.subscribe('**', () => {});
        await bus.publishMany(Array.from({ length: 300 }, (_, i) => ({ type: 'a.b', payload: i })));
        await bus.publish({ type: 'a.c', payload: 'last' });
      })();
    `);
    expect(r).toMatchObject({ status: 0, signal: null });
    expect(r.stdout.trim()).toBe('handled 301');
  });
});
