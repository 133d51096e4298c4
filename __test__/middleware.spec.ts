import { EventBus, EventBusError } from '@situs/event-bus';
import { openBus } from './helpers';

describe('use(middleware)', () => {
  let bus: EventBus;
  beforeEach(async () => ({ bus } = await openBus({ validation: { maxPayloadBytes: 100 } })));
  afterEach(() => bus.close());

  it('runs after the built-ins, in registration order, and can modify the event', async () => {
    const calls: string[] = [];
    bus.use(async (e) => {
      calls.push(`first:${e.type}`);
      expect(e.id).toBeDefined();
      expect(e.timestamp).toBeInstanceOf(Date);
      return { ...e, payload: { wrapped: e.payload }, metadata: { by: 'first' } };
    });
    bus.use((e) => {
      calls.push(`second:${JSON.stringify(e.payload)}`);
      return { ...e, userId: 'stamped' };
    });
    const seen: unknown[] = [];
    bus.subscribe('**', (e) => {
      seen.push(e);
    });
    const e = await bus.publish({ type: 'a.b', payload: 1 });
    expect(calls).toEqual(['first:a.b', 'second:{"wrapped":1}']);
    expect(e).toMatchObject({ payload: { wrapped: 1 }, metadata: { by: 'first' }, userId: 'stamped' });
    // An invalid event never reaches user middleware.
    await expect(bus.publish({ type: 'Nope', payload: 1 })).rejects.toMatchObject({ code: 'INVALID_EVENT' });
    expect(calls).toHaveLength(2);
    await bus.close();
    expect(seen).toEqual([expect.objectContaining({ id: e.id, payload: { wrapped: 1 }, userId: 'stamped' })]);
  });

  it('keeps id and timestamp, and passes the event through when nothing is returned', async () => {
    bus.use(() => undefined);
    bus.use((e) => ({ type: e.type, payload: 'replaced' }));
    const e = await bus.publish({ type: 'a.b', payload: 'original' });
    const [stored] = (await bus.getEvents()).events;
    expect(stored).toMatchObject({ id: e.id, payload: 'replaced' });
    expect(stored.timestamp).toEqual(e.timestamp);
  });

  it('rejects with REJECTED carrying the JS message, storing and delivering nothing', async () => {
    let delivered = 0;
    bus.subscribe('**', () => {
      delivered++;
    });
    bus.use((e) => {
      if ((e.payload as { forbidden?: boolean }).forbidden) throw new Error('forbidden payload');
      return e;
    });
    bus.use(async (e) => {
      if (e.type === 'a.async') throw new Error('async says no');
    });
    await expect(bus.publish({ type: 'a.b', payload: { forbidden: true } })).rejects.toEqual(
      new EventBusError('REJECTED', 'forbidden payload'),
    );
    await expect(bus.publish({ type: 'a.async', payload: {} })).rejects.toMatchObject({
      code: 'REJECTED',
      message: 'async says no',
    });
    const err = await bus.publishMany([{ type: 'a.b', payload: {} }, { type: 'a.b', payload: { forbidden: true } }]).catch((e) => e);
    expect(err).toMatchObject({ code: 'REJECTED', message: 'events[1]: forbidden payload' });
    await bus.close();
    expect(delivered).toBe(0);
  });

  it('re-validates what middleware returns', async () => {
    bus.use((e) => ({ ...e, payload: 'x'.repeat(200) }));
    await expect(bus.publish({ type: 'a.b', payload: 1 })).rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    const off = bus.use((e) => ({ ...e, type: 'Invalid Type' }));
    await expect(bus.publish({ type: 'a.b', payload: 1 })).rejects.toMatchObject({ code: 'INVALID_EVENT' });
    off();
    const circular: Record<string, unknown> = {};
    circular.me = circular;
    bus.use((e) => ({ ...e, payload: circular }));
    await expect(bus.publish({ type: 'a.b', payload: 1 })).rejects.toMatchObject({
      code: 'REJECTED',
      message: expect.stringContaining('payload.me is a circular reference'),
    });
    expect((await bus.getEvents()).events).toEqual([]);
  });

  it('the returned function removes the middleware', async () => {
    let calls = 0;
    const off = bus.use((e) => {
      calls++;
      return e;
    });
    await bus.publish({ type: 'a.b', payload: 1 });
    off();
    off();
    await bus.publish({ type: 'a.b', payload: 2 });
    expect(calls).toBe(1);
  });
});
