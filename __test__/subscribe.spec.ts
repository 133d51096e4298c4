import { BusEvent, EventBus } from '@situs/event-bus';
import { deferred, openBus, until } from './helpers';

describe('subscribe', () => {
  let bus: EventBus;
  beforeEach(async () => ({ bus } = await openBus()));
  afterEach(() => bus.close());

  it('matches * as one segment and ** / # as the rest, with project and tenant filters', async () => {
    const got: Record<string, string[]> = { one: [], tail: [], hash: [], list: [], p1: [], t1: [] };
    const record = (key: string) => (e: BusEvent) => {
      got[key].push(e.type);
    };
    bus.subscribe('project.*', record('one'));
    bus.subscribe('project.**', record('tail'));
    bus.subscribe('#', record('hash'));
    bus.subscribe(['user.created', '*.deleted'], record('list'));
    bus.subscribe('**', record('p1'), { projectId: 'p1' });
    bus.subscribe('**', record('t1'), { tenantId: 't1' });
    await bus.publishMany([
      { type: 'project.created', payload: 1, projectId: 'p1' },
      { type: 'project.status.changed', payload: 2, tenantId: 't1' },
      { type: 'user.created', payload: 3, projectId: 'p2' },
      { type: 'user.deleted', payload: 4, projectId: 'p1', tenantId: 't1' },
    ]);
    await bus.close();
    expect(got.one).toEqual(['project.created']);
    expect(got.tail).toEqual(['project.created', 'project.status.changed']);
    expect(got.hash).toHaveLength(4);
    expect(got.list).toEqual(['user.created', 'user.deleted']);
    expect(got.p1).toEqual(['project.created', 'user.deleted']);
    expect(got.t1).toEqual(['project.status.changed', 'user.deleted']);
  });

  it('delivers each event once, in position order, across concurrent publishers, in batches', async () => {
    const positions: number[] = [];
    bus.subscribe('**', (e) => {
      positions.push(e.position);
    });
    const publishes = Array.from({ length: 2000 }, (_, i) => bus.publish({ type: 'load.tick', payload: i }));
    const acked = (await Promise.all(publishes)).map((e) => e.position as number);
    await bus.close();
    expect(new Set(acked).size).toBe(2000);
    expect(positions).toEqual([...acked].sort((a, b) => a - b));
    const m = bus.metrics();
    expect(m.delivered).toBe(2000);
    // Far fewer crossings into JS than events.
    expect(m.deliveryBatches).toBeLessThan(m.delivered / 10);
  });

  it('awaits async handlers per subscriber without blocking other subscribers or publishers', async () => {
    const gate = deferred();
    const slow: number[] = [];
    const fast: number[] = [];
    bus.subscribe('**', async (e) => {
      await gate.promise;
      slow.push(e.payload as number);
    });
    bus.subscribe('**', (e) => {
      fast.push(e.payload as number);
    });
    for (let i = 0; i < 5; i++) await bus.publish({ type: 'a.b', payload: i });
    await until(() => fast.length === 5, 'fast subscriber');
    expect(slow).toEqual([]);
    gate.resolve();
    await until(() => slow.length === 5, 'slow subscriber');
    expect(slow).toEqual([0, 1, 2, 3, 4]);
  });

  it('one handler call at a time per subscriber, in order, even when handlers are slow', async () => {
    let running = 0;
    let maxRunning = 0;
    const order: number[] = [];
    bus.subscribe('**', async (e) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 1));
      order.push(e.payload as number);
      running--;
    });
    await bus.publishMany(Array.from({ length: 20 }, (_, i) => ({ type: 'a.b', payload: i })));
    await bus.close();
    expect(maxRunning).toBe(1);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('a handler that throws or rejects is logged and counted, and the bus goes on', async () => {
    const { bus: logged, logs } = await openBus();
    const seen: number[] = [];
    logged.subscribe('**', (e) => {
      if (e.payload === 1) throw new Error('sync boom');
      seen.push(e.payload as number);
    });
    logged.subscribe('**', async (e) => {
      if (e.payload === 2) throw new Error('async boom');
    });
    for (let i = 0; i < 4; i++) await logged.publish({ type: 'a.b', payload: i });
    await logged.close();
    expect(seen).toEqual([0, 2, 3]);
    expect(logged.metrics()).toMatchObject({ handlerErrors: 2, delivered: 6 });
    const failures = logs.filter((l) => l.message === 'event handler failed');
    expect(failures.map((l) => [l.level, l.fields.error])).toEqual(
      expect.arrayContaining([
        ['warn', 'sync boom'],
        ['warn', 'async boom'],
      ]),
    );
  });

  it('unsubscribe stops delivery at once, even within a batch', async () => {
    const seen: number[] = [];
    const sub = bus.subscribe('**', (e) => {
      seen.push(e.payload as number);
      if (e.payload === 2) sub.unsubscribe();
    });
    await bus.publishMany(Array.from({ length: 10 }, (_, i) => ({ type: 'a.b', payload: i })));
    await bus.publish({ type: 'a.b', payload: 99 });
    await bus.close();
    expect(seen).toEqual([0, 1, 2]);
    expect(sub.active).toBe(false);
    expect(bus.metrics().subscribers).toBe(0);
  });

  it('handlers receive their own copy with a Date timestamp', async () => {
    // Subscribers run independently (in either order): each records on its own.
    const mutated: BusEvent[] = [];
    const untouched: BusEvent[] = [];
    bus.subscribe('**', (e) => {
      (e.payload as { n: number }).n++;
      mutated.push(e);
    });
    bus.subscribe('**', (e) => {
      untouched.push(e);
    });
    const published = await bus.publish({ type: 'a.b', payload: { n: 1 }, metadata: { m: true } });
    await bus.close();
    expect(mutated.map((e) => e.payload)).toEqual([{ n: 2 }]);
    expect(untouched.map((e) => e.payload)).toEqual([{ n: 1 }]);
    expect(untouched[0]).toEqual({ ...published, stored: undefined, position: published.position });
    expect(untouched[0].timestamp).toBeInstanceOf(Date);
  });
});
