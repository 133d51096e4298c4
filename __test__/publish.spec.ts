import { EventBus, EventBusError, EventType } from '@situs/event-bus';
import { openBus, withEnv } from './helpers';

describe('publish', () => {
  let bus: EventBus;
  beforeEach(async () => ({ bus } = await openBus()));
  afterEach(() => bus.close());

  it('assigns a UUIDv7 id, a timestamp and increasing positions, and resolves with the stored event', async () => {
    const before = Date.now();
    const a = await bus.publish({
      type: EventType.PROJECT_CREATED,
      payload: { name: 'Apollo', tags: ['x'], nested: { ok: true } },
      projectId: 'p1',
      tenantId: 't1',
      userId: 'u1',
      metadata: { source: 'test' },
    });
    const b = await bus.publish({ type: EventType.PROJECT_UPDATED, payload: null });
    expect(a.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a.timestamp).toBeInstanceOf(Date);
    expect(a.timestamp.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(a).toMatchObject({
      type: 'project.created',
      payload: { name: 'Apollo', tags: ['x'], nested: { ok: true } },
      projectId: 'p1',
      tenantId: 't1',
      userId: 'u1',
      metadata: { source: 'test' },
      stored: true,
    });
    expect(b.payload).toBeNull();
    expect(b.position).toBe((a.position as number) + 1);
  });

  it('keeps a given id and payloads with unicode, big nesting and every JSON type', async () => {
    const id = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
    const payload = { s: 'héllo 👋 \u0000 "quoted"', n: -1.5e300, b: false, z: null, a: [1, [2, [3]]], d: new Date(0) };
    const e = await bus.publish({ id, type: 'a.b', payload });
    expect(e.id).toBe(id);
    expect(e.payload).toEqual({ ...payload, d: '1970-01-01T00:00:00.000Z' });
    const { events } = await bus.getEvents();
    expect(events[0].payload).toEqual(e.payload);
  });

  it('publishes made in one tick are each stored or refused alone, in publish order', async () => {
    // Past the size at which queued publishes cross early, and across a tenant handle.
    const tenant = bus.forTenant('t1');
    const all = Array.from({ length: 1300 }, (_, i) =>
      i % 100 === 7
        ? bus.publish({ type: 'bad type!', payload: i })
        : (i % 10 === 3 ? tenant : bus).publish({ type: 'a.b', payload: i }),
    );
    const results = await Promise.allSettled(all);
    const refused = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []));
    expect(refused).toEqual(Array.from({ length: 13 }, (_, k) => k * 100 + 7));
    for (const i of refused) expect((results[i] as PromiseRejectedResult).reason).toMatchObject({ code: 'INVALID_EVENT' });
    const stored = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(stored.map((e) => e.payload)).toEqual(Array.from({ length: 1300 }, (_, i) => i).filter((i) => i % 100 !== 7));
    expect(stored.filter((e) => e.tenantId === 't1')).toHaveLength(130);
    const positions = stored.map((e) => e.position as number);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  it('publishMany stores all atomically and returns them in order', async () => {
    const events = await bus.publishMany([
      { type: 'a.one', payload: 1 },
      { type: 'a.two', payload: 2 },
      { type: 'a.three', payload: 3 },
    ]);
    expect(events.map((e) => e.type)).toEqual(['a.one', 'a.two', 'a.three']);
    expect(events.map((e) => e.position)).toEqual([1, 2, 3]);
    await expect(bus.publishMany([{ type: 'a.ok', payload: 1 }, { type: 'not valid', payload: 2 }])).rejects.toMatchObject({
      code: 'INVALID_EVENT',
      message: expect.stringMatching(/^events\[1\]\.type must match/),
    });
    expect((await bus.getEvents()).events).toHaveLength(3);
    expect(await bus.publishMany([])).toEqual([]);
  });

  it('re-publishing an id with identical content returns the stored event and delivers nothing', async () => {
    const seen: number[] = [];
    bus.subscribe('**', (e) => {
      seen.push(e.position);
    });
    const first = await bus.publish({ type: 'order.placed', payload: { total: 5, items: [1] }, projectId: 'p' });
    const retry = await bus.publish({ id: first.id, type: 'order.placed', payload: { items: [1], total: 5 }, projectId: 'p' });
    expect(retry.position).toBe(first.position);
    expect(retry.timestamp).toEqual(first.timestamp);
    const err = await bus.publish({ id: first.id, type: 'order.placed', payload: { total: 6 } }).catch((e) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect(err.code).toBe('DUPLICATE_EVENT');
    expect(err.message).toContain(first.id);
    await bus.close();
    expect(seen).toEqual([first.position]);
    expect(bus.metrics()).toMatchObject({ published: 1, duplicates: 1 });
  });
});

describe('open', () => {
  it('EVENT_BUS_ENABLED=false validates but neither stores nor delivers; options win', () =>
    withEnv('EVENT_BUS_ENABLED', 'false', async () => {
      const { bus } = await openBus();
      let delivered = 0;
      bus.subscribe('**', () => {
        delivered++;
      });
      const e = await bus.publish({ type: 'a.b', payload: 1 });
      expect(e).toMatchObject({ stored: false, position: null, type: 'a.b', payload: 1 });
      await expect(bus.publish({ type: 'A', payload: 1 })).rejects.toMatchObject({ code: 'INVALID_EVENT' });
      expect((await bus.getEvents()).events).toEqual([]);
      await bus.close();
      expect(delivered).toBe(0);
      const { bus: enabled } = await openBus({ enabled: true });
      expect((await enabled.publish({ type: 'a.b', payload: 1 })).stored).toBe(true);
      await enabled.close();
    }));

  it('reads EVENT_STORE_URL when storeUrl is not given', () =>
    withEnv('EVENT_STORE_URL', 'mysql://nowhere/db', async () => {
      await expect(EventBus.open({ logger: () => {} })).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringContaining('mysql://nowhere/db'),
      });
    }));

  it.each([
    [{ bogus: 1 }, 'unknown field `bogus`'],
    [{ batch: { maxSize: 0 } }, 'batch.maxSize must be between'],
    [{ batch: { maxsize: 10 } }, 'batch.maxsize: unknown field'],
    [{ webhook: { timeoutMs: 'slow' } }, 'webhook.timeoutMs: invalid type'],
    [{ enabled: 'yes' }, 'enabled: invalid type'],
    [{ validation: { maxPayloadBytes: -1 } }, 'validation.maxPayloadBytes'],
    [{ validation: { schemas: { 'a.b': { type: 42 } } } }, 'not a valid JSON Schema'],
    [{ logLevel: 'chatty' }, 'logLevel: unknown variant'],
    [{ storeUrl: 'mysql://x' }, 'storeUrl "mysql://x" is not supported'],
    [{ store: { poolSize: 0 } }, 'store.poolSize must be between'],
    [{ retention: { archiveAfter: 'whenever' } }, 'retention.archiveAfter must be milliseconds or a duration'],
    [{ logger: 'console' }, 'logger must be a function'],
  ])('refuses bad options %j with INVALID_CONFIG', async (options, message) => {
    const err = await EventBus.open(options as never).catch((e) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect(err.code).toBe('INVALID_CONFIG');
    expect(err.message).toContain(message);
  });

  it('refuses bad environment values with INVALID_CONFIG naming the variable', () =>
    withEnv('WEBHOOK_TIMEOUT', 'soon', async () => {
      await expect(EventBus.open({ logger: () => {} })).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringContaining('WEBHOOK_TIMEOUT'),
      });
    }));
});
