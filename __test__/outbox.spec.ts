import { Client, DatabaseError } from 'pg';
import { BusEvent, EventBus } from '@situs/event-bus';
import { postgresStore, TEST_DATABASE_URL } from './stores';
import { until } from './helpers';

/** The payload the application writes; declare it in `EventMap` in an app to type `e.payload`. */
interface OrderPlaced {
  orderId: number;
  total: number;
  items: string[];
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The transactional outbox as an application uses it with plain `pg`: the event is appended by
 * `event_bus_publish` inside the application's own transaction, and exists only if it commits.
 */
describe('event_bus_publish (transactional outbox, PostgreSQL)', () => {
  let store: { url: string; schema: string; drop: () => Promise<void> };
  let bus: EventBus;
  let app: Client;

  beforeAll(async () => {
    store = await postgresStore();
    bus = await EventBus.open({ storeUrl: store.url, logger: () => {} }); // installs the function
    app = new Client({ connectionString: TEST_DATABASE_URL });
    await app.connect();
    await app.query(`SET search_path TO ${store.schema}`);
    await app.query('CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL)');
  });
  afterAll(async () => {
    await app.end();
    await bus.close();
    await store.drop();
  });

  /** The application's unit of work: its own row and the event, committed or rolled back together. */
  async function placeOrder(order: OrderPlaced, outcome: 'COMMIT' | 'ROLLBACK'): Promise<number> {
    await app.query('BEGIN');
    try {
      await app.query('INSERT INTO orders (id, total) VALUES ($1, $2)', [order.orderId, order.total]);
      // Last statement before COMMIT: the append lock is held until the transaction ends.
      const { rows } = await app.query<{ position: string }>(
        `SELECT event_bus_publish('order.placed', $1::jsonb, p_project_id => $2, p_metadata => $3::jsonb) AS position`,
        [JSON.stringify(order), 'p1', JSON.stringify({ source: 'checkout' })],
      );
      await app.query(outcome);
      return Number(rows[0].position); // bigint arrives as a string
    } catch (err) {
      await app.query('ROLLBACK');
      throw err;
    }
  }

  it('COMMIT: a subscriber gets the event once, like any bus.publish', async () => {
    const received: BusEvent<'order.placed'>[] = [];
    const sub = bus.subscribe('order.placed', (e) => {
      received.push(e);
    });
    const order: OrderPlaced = { orderId: 1, total: 12.5, items: ['book'] };
    const position = await placeOrder(order, 'COMMIT');
    await until(() => received.length === 1, 'the committed event');

    const e = received[0];
    expect(e).toMatchObject({ type: 'order.placed', position, projectId: 'p1', metadata: { source: 'checkout' } });
    expect(e.payload as OrderPlaced).toEqual(order);
    expect(e.id).toMatch(UUID_V7);
    expect(e.timestamp).toBeInstanceOf(Date);
    expect(e.tenantId).toBeUndefined();

    // Delivered once: the next event follows it directly, with nothing in between.
    const next = await bus.publish({ type: 'order.placed', payload: { orderId: 2, total: 1, items: [] } });
    await until(() => received.length === 2, 'the next event');
    expect(received.map((r) => r.position)).toEqual([position, next.position]);
    const { events } = await bus.getEvents({ types: ['order.placed'] });
    expect(events.map((s) => s.id)).toEqual([e.id, next.id]);
    sub.unsubscribe();
  });

  it('ROLLBACK: the event never existed, and later events still arrive', async () => {
    const received: string[] = [];
    const sub = bus.subscribe('order.*', (e) => {
      received.push(e.type);
    });
    const rolledBack = await placeOrder({ orderId: 3, total: 99, items: ['lost'] }, 'ROLLBACK');
    const cancelled = await bus.publish({ type: 'order.cancelled', payload: { orderId: 4 } });
    await until(() => received.length === 1, 'the event after the rollback');
    expect(received).toEqual(['order.cancelled']); // delivered in position order: nothing came before it
    expect(cancelled.position).toBeGreaterThan(rolledBack);

    const { rows } = await app.query('SELECT count(*)::int AS n FROM orders WHERE id = 3');
    expect(rows[0].n).toBe(0);
    const { events } = await bus.getEvents({ types: ['order.*'], limit: 100 });
    expect(events.some((s) => (s.payload as { orderId?: number }).orderId === 3)).toBe(false);
    sub.unsubscribe();
  });

  it('refuses invalid events with a SQLSTATE and a message naming the field', async () => {
    const refused = (sql: string, params: unknown[] = []) =>
      app.query(sql, params).then(
        () => {
          throw new Error('expected an error');
        },
        (err: unknown) => err as DatabaseError,
      );
    const badType = await refused(`SELECT event_bus_publish('Order.Placed', '{}')`);
    expect(badType).toMatchObject({ code: '22023', column: 'type' });
    expect(badType.message).toMatch(/^INVALID_EVENT: type must match/);
    const badMeta = await refused(`SELECT event_bus_publish('order.placed', '{}', p_metadata => $1::jsonb)`, [
      JSON.stringify(['not', 'an', 'object']),
    ]);
    expect(badMeta).toMatchObject({ code: '22023', column: 'metadata', message: 'INVALID_EVENT: metadata must be an object' });
    const tooBig = await refused(`SELECT event_bus_publish('order.placed', $1::jsonb)`, [JSON.stringify('x'.repeat(1 << 20))]);
    expect(tooBig).toMatchObject({ code: '54000', column: 'payload' });
    expect(tooBig.message).toMatch(/^PAYLOAD_TOO_LARGE: payload is 1048578 bytes/);
  });
});
