import { BusEvent, EventBus } from '@situs/event-bus';
import { openBus } from './helpers';

describe('forTenant', () => {
  let bus: EventBus;
  beforeEach(async () => ({ bus } = await openBus()));
  afterEach(() => bus.close());

  it('stamps its tenant, refuses other tenants and sees only its own', async () => {
    const acme = bus.forTenant('acme');
    expect(acme.tenantId).toBe('acme');
    const acmeSeen: BusEvent[] = [];
    const allSeen: BusEvent[] = [];
    acme.subscribe('**', (e) => {
      acmeSeen.push(e);
    });
    bus.subscribe('**', (e) => {
      allSeen.push(e);
    });
    const stamped = await acme.publish({ type: 'doc.created', payload: 1 });
    expect(stamped.tenantId).toBe('acme');
    await acme.publish({ type: 'doc.created', payload: 2, tenantId: 'acme' });
    await expect(acme.publish({ type: 'doc.created', payload: 3, tenantId: 'globex' })).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('globex'),
    });
    await expect(acme.publishMany([{ type: 'a.b', payload: 1 }, { type: 'a.b', payload: 2, tenantId: 'globex' }])).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringMatching(/^events\[1\]\.tenantId/),
    });
    await bus.publish({ type: 'doc.created', payload: 4, tenantId: 'globex' });
    await bus.publish({ type: 'doc.created', payload: 5 });
    expect(() => acme.subscribe('**', () => {}, { tenantId: 'globex' })).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN' }),
    );
    const page = await acme.getEvents();
    expect(page.events.map((e) => e.payload)).toEqual([1, 2]);
    await expect(acme.getEvents({ tenantId: 'globex' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await acme.getEventsByProject('none')).events).toEqual([]);
    await bus.close();
    expect(acmeSeen.map((e) => e.payload)).toEqual([1, 2]);
    expect(allSeen.map((e) => e.payload)).toEqual([1, 2, 4, 5]);
  });

  it('security.requireTenant rejects events without a tenant', async () => {
    const { bus: strict } = await openBus({ security: { requireTenant: true } });
    await expect(strict.publish({ type: 'a.b', payload: 1 })).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('tenantId is required'),
    });
    expect((await strict.forTenant('t').publish({ type: 'a.b', payload: 1 })).tenantId).toBe('t');
    expect((await strict.getEvents()).events).toHaveLength(1);
    await strict.close();
  });
});
