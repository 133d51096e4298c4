import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { Inject, Injectable, type INestApplication, type LoggerService, Module, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  AggregateRoot,
  CommandHandler,
  CqrsModule,
  EventBus as CqrsEventBus,
  EventPublisher,
  EventsHandler,
  type ICommand,
  type ICommandHandler,
  type IEvent,
  type IEventHandler,
  ofType,
  Saga,
} from '@nestjs/cqrs';
import { Client } from 'pg';
import { map, type Observable } from 'rxjs';
import { EventBus, EventBusError, type EventBusOptions } from '@situs/event-bus';
import { EventBusModule } from '@situs/event-bus/nest';
import {
  BusEventPublisher,
  BusEventType,
  CqrsBridgeModule,
  type CqrsBridgeModuleOptions,
  eventTypeOf,
  storedEventOf,
} from '@situs/event-bus/nest/cqrs';
import { postgresStore } from '../stores';
import { eventually, RecordingLogger } from './nest-app';

jest.setTimeout(60_000);

@BusEventType('order.placed')
class OrderPlaced {
  constructor(
    readonly orderId: string,
    readonly projectId: string,
    readonly total: number,
  ) {}
  describe(): string {
    return `${this.orderId}=${this.total}`;
  }
}

class OrderShipped {
  static readonly eventType = 'order.shipped';
  constructor(readonly orderId: string) {}
}

@BusEventType('invoice.issued')
class InvoiceIssued {
  constructor(
    readonly invoiceId: string,
    readonly issuedAt: Date,
  ) {}
  static fromBus(payload: { invoiceId: string; issuedAt: string }): InvoiceIssued {
    return new InvoiceIssued(payload.invoiceId, new Date(payload.issuedAt));
  }
}

class Untyped {
  constructor(readonly x: number) {}
}

class ShipOrder implements ICommand {
  constructor(readonly orderId: string) {}
}

/** A service publishing through cqrs, as app code does (explicit @Inject: no emitted metadata needed). */
@Injectable()
class PlacesOrders {
  constructor(@Inject(CqrsEventBus) private readonly events: CqrsEventBus) {}
  place(orderId: string, projectId: string, total: number): Promise<unknown> {
    return this.events.publish(new OrderPlaced(orderId, projectId, total));
  }
}

interface Seen {
  app: string;
  event: object;
}

/** A Nest 11 app with CqrsModule, EventBusModule and the bridge; its handlers record into `seen`. */
async function cqrsApp(
  name: string,
  seen: Seen[],
  bus: EventBusOptions,
  bridge: CqrsBridgeModuleOptions = {},
  logger: LoggerService | false = false,
): Promise<INestApplication> {
  @EventsHandler(OrderPlaced, OrderShipped)
  class OrderHandler implements IEventHandler<OrderPlaced | OrderShipped> {
    handle(event: OrderPlaced | OrderShipped): void {
      seen.push({ app: name, event });
      if (event.orderId === 'boom') throw new Error('handler kaboom');
    }
  }

  @EventsHandler(InvoiceIssued)
  class InvoiceHandler implements IEventHandler<InvoiceIssued> {
    handle(event: InvoiceIssued): void {
      seen.push({ app: name, event });
    }
  }

  // A saga turns OrderPlaced into a ShipOrder command.
  @Injectable()
  class Shipping {
    @Saga()
    placed = (events$: Observable<IEvent>): Observable<ICommand> =>
      events$.pipe(
        ofType(OrderPlaced),
        map((e) => new ShipOrder(e.orderId)),
      );
  }

  @CommandHandler(ShipOrder)
  class ShipOrderHandler implements ICommandHandler<ShipOrder> {
    async execute(command: ShipOrder): Promise<void> {
      seen.push({ app: name, event: command });
    }
  }

  @Module({
    imports: [
      CqrsModule.forRoot(),
      EventBusModule.forRoot({ logger: () => undefined, isGlobal: true, ...bus }),
      CqrsBridgeModule.forRoot(bridge),
    ],
    providers: [OrderHandler, InvoiceHandler, Shipping, ShipOrderHandler, PlacesOrders],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger });
  await app.init();
  return app;
}

const ofApp = (seen: Seen[], app: string, kind: new (...args: never[]) => object): object[] =>
  seen.filter((s) => s.app === app && s.event instanceof kind).map((s) => s.event);

/** Records unhandled rejections while `run` runs (and a little after). */
async function withoutUnhandledRejections(run: () => Promise<void>): Promise<unknown[]> {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    await run();
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  return unhandled;
}

describe('the type name of a cqrs event class', () => {
  it('comes from @BusEventType, else its own static eventType; the decorator wins; never inherited or made up', () => {
    @BusEventType('order.decorated')
    class Both {
      static readonly eventType = 'order.static';
    }
    class Child extends OrderPlaced {}
    class BadStatic {
      static readonly eventType = 42;
    }
    expect(eventTypeOf(OrderPlaced)).toBe('order.placed');
    expect(eventTypeOf(OrderShipped)).toBe('order.shipped');
    expect(eventTypeOf(Both)).toBe('order.decorated');

    const errorOf = (f: () => unknown): EventBusError => {
      try {
        f();
      } catch (err) {
        return err as EventBusError;
      }
      throw new Error('no error');
    };
    for (const [f, message] of [
      [() => eventTypeOf(Untyped), /^Untyped has no bus event type: decorate it with @BusEventType\('…'\) or give it static readonly eventType = '…'$/],
      [() => eventTypeOf(Child), /^Child has no bus event type \(the type of its parent OrderPlaced is not inherited\)/],
      [() => eventTypeOf(BadStatic), /^BadStatic\.eventType must be a non-empty string/],
      [() => BusEventType(''), /^@BusEventType type must be a non-empty string/],
    ] as const) {
      const err = errorOf(f);
      expect(err).toBeInstanceOf(EventBusError);
      expect([err.code, err.message]).toEqual(['INVALID_EVENT', expect.stringMatching(message)]);
    }
  });
});

describe('@nestjs/cqrs bridge (memory store)', () => {
  it('cqrs publish is stored (own fields as payload, projectId from the event); @EventsHandler and saga run once with a real instance', async () => {
    const seen: Seen[] = [];
    const app = await cqrsApp('a', seen, { storeUrl: 'memory:' });
    try {
      const cqrs = app.get(CqrsEventBus);
      const bus = app.get(EventBus);
      await app.get(PlacesOrders).place('o1', 'p1', 5);
      await cqrs.publish(new OrderShipped('o1'));
      // Another publisher of the same type (not cqrs) reaches the cqrs handlers too.
      await bus.publish({ type: 'order.placed', projectId: 'p2', payload: { orderId: 'o2', projectId: 'p2', total: 7 } });

      await eventually(async () => (await bus.getEvents()).events.length === 3, 'three stored');
      const { events } = await bus.getEvents();
      expect(events.map((e) => [e.type, e.payload, e.projectId])).toEqual([
        ['order.placed', { orderId: 'o1', projectId: 'p1', total: 5 }, 'p1'],
        ['order.shipped', { orderId: 'o1' }, undefined],
        ['order.placed', { orderId: 'o2', projectId: 'p2', total: 7 }, 'p2'],
      ]);

      await eventually(() => ofApp(seen, 'a', ShipOrder).length === 2, 'the saga commands');
      await new Promise((r) => setTimeout(r, 150)); // no second delivery arrives late
      const placed = ofApp(seen, 'a', OrderPlaced) as OrderPlaced[];
      expect(placed.map((e) => e.describe())).toEqual(['o1=5', 'o2=7']);
      expect(ofApp(seen, 'a', OrderShipped)).toHaveLength(1);
      expect((ofApp(seen, 'a', ShipOrder) as ShipOrder[]).map((c) => c.orderId)).toEqual(['o1', 'o2']);
      // The stored event behind each delivered instance, for idempotent handlers.
      expect(placed.map((e) => storedEventOf(e)?.id)).toEqual([events[0].id, events[2].id]);
      expect(storedEventOf(new OrderPlaced('x', 'p', 1))).toBeUndefined();
    } finally {
      await app.close();
    }
  });

  it('an event published through cqrs in onModuleInit reaches the handlers once, after bootstrap', async () => {
    const seen: Seen[] = [];
    @Injectable()
    class EarlyPublisher implements OnModuleInit {
      constructor(@Inject(CqrsEventBus) private readonly events: CqrsEventBus) {}
      onModuleInit(): void {
        this.events.publish(new OrderShipped('early'));
      }
    }
    @EventsHandler(OrderShipped)
    class ShippedHandler implements IEventHandler<OrderShipped> {
      handle(event: OrderShipped): void {
        seen.push({ app: 'a', event });
      }
    }
    @Module({
      imports: [CqrsModule.forRoot(), EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined, isGlobal: true }), CqrsBridgeModule.forRoot()],
      providers: [EarlyPublisher, ShippedHandler],
    })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false });
    await app.init();
    try {
      await eventually(() => seen.length === 1, 'the early event');
      await new Promise((r) => setTimeout(r, 100));
      expect(seen.map((s) => [s.event instanceof OrderShipped, (s.event as OrderShipped).orderId])).toEqual([[true, 'early']]);
    } finally {
      await app.close();
    }
  });

  it('bridges only once CqrsModule has bound its handlers, even when the bridge bootstraps first', async () => {
    const seen: Seen[] = [];
    @Injectable()
    class EarlyPublisher implements OnModuleInit {
      constructor(@Inject(CqrsEventBus) private readonly events: CqrsEventBus) {}
      async onModuleInit(): Promise<void> {
        await this.events.publish(new OrderShipped('early'));
      }
    }
    // A slow bootstrap hook between the bridge's and CqrsModule's: deliveries would arrive meanwhile.
    @Injectable()
    class Slow implements OnApplicationBootstrap {
      async onApplicationBootstrap(): Promise<void> {
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    @Module({ providers: [Slow] })
    class SlowModule {}
    @EventsHandler(OrderShipped)
    class ShippedHandler implements IEventHandler<OrderShipped> {
      handle(event: OrderShipped): void {
        seen.push({ app: 'a', event });
      }
    }
    // Global modules bootstrap first, in import order: the bridge, the slow one, then CqrsModule.
    @Module({
      imports: [
        EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined, isGlobal: true }),
        { ...CqrsBridgeModule.forRoot(), global: true },
        { module: SlowModule, global: true },
        CqrsModule.forRoot(),
      ],
      providers: [EarlyPublisher, ShippedHandler],
    })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false });
    await app.init();
    try {
      await app.get(CqrsEventBus).publish(new OrderShipped('late'));
      await eventually(() => seen.length === 2, 'both events');
      expect(seen.map((s) => (s.event as OrderShipped).orderId)).toEqual(['early', 'late']);
    } finally {
      await app.close();
    }
  });

  it('a static fromBus rebuilds the instance (a Date from its ISO string)', async () => {
    const seen: Seen[] = [];
    const app = await cqrsApp('a', seen, { storeUrl: 'memory:' });
    try {
      const at = new Date('2025-01-02T03:04:05.000Z');
      await app.get(CqrsEventBus).publish(new InvoiceIssued('i1', at));
      await eventually(() => ofApp(seen, 'a', InvoiceIssued).length === 1, 'the invoice handler');
      const [invoice] = ofApp(seen, 'a', InvoiceIssued) as InvoiceIssued[];
      expect(invoice.issuedAt).toBeInstanceOf(Date);
      expect(invoice.issuedAt.toISOString()).toBe(at.toISOString());
    } finally {
      await app.close();
    }
  });

  it('publishAll is one atomic publishMany: a batch with a bad event stores none; AggregateRoot.commit uses it', async () => {
    const seen: Seen[] = [];
    const logger = new RecordingLogger();
    const app = await cqrsApp(
      'a',
      seen,
      {
        storeUrl: 'memory:',
        validation: { schemas: { 'order.shipped': { type: 'object', required: ['orderId'], properties: { orderId: { type: 'string', minLength: 2 } } } } },
      },
      {},
      logger,
    );
    try {
      const cqrs = app.get(CqrsEventBus);
      const bus = app.get(EventBus);
      const unhandled = await withoutUnhandledRejections(async () => {
        const untyped = await Promise.resolve(cqrs.publishAll([new OrderPlaced('o1', 'p1', 1), new Untyped(1)])).catch((e: unknown) => e);
        expect(untyped).toBeInstanceOf(EventBusError);
        expect([(untyped as EventBusError).code, (untyped as EventBusError).message]).toEqual([
          'INVALID_EVENT',
          expect.stringMatching(/^events\[1\]: Untyped has no bus event type/),
        ]);
        // Refused by the core's schema check: the first, valid, event is not stored either.
        const invalid = await Promise.resolve(cqrs.publishAll([new OrderPlaced('o2', 'p1', 2), new OrderShipped('x')])).catch((e: unknown) => e);
        expect(invalid).toBeInstanceOf(EventBusError);
        // Fire-and-forget, as cqrs callers do: nothing thrown, no unhandled rejection.
        cqrs.publishAll([new Untyped(2)]);
        await eventually(() => app.get(BusEventPublisher).failedPublishes === 3, 'three failures');
      });
      expect(unhandled).toEqual([]);
      expect((await bus.getEvents()).events).toEqual([]);
      const errors = logger.records.filter((r) => r.level === 'error' && r.context === 'EventBus').map((r) => r.message);
      expect(errors).toHaveLength(3);
      expect(errors[0]).toMatch(/^publishAll of 2 events failed: events\[1\]: Untyped has no bus event type/);

      // An aggregate's commit publishes its events with publishAll: stored together, in order.
      class Order extends AggregateRoot {
        place(): void {
          this.apply(new OrderPlaced('o3', 'p1', 3));
          this.apply(new OrderShipped('o3'));
        }
      }
      const order = app.get(EventPublisher).mergeObjectContext(new Order());
      order.place();
      order.commit();
      await eventually(async () => (await bus.getEvents()).events.length === 2, 'the aggregate events');
      const { events } = await bus.getEvents();
      expect(events.map((e) => [e.type, e.position - events[0].position])).toEqual([
        ['order.placed', 0],
        ['order.shipped', 1],
      ]);
      await eventually(() => ofApp(seen, 'a', OrderShipped).length === 1, 'the aggregate events handled');
      expect((ofApp(seen, 'a', OrderPlaced) as OrderPlaced[]).map((e) => e.orderId)).toEqual(['o3']);
    } finally {
      await app.close();
    }
  });

  it('publishing an event class without a type name is a logged INVALID_EVENT naming the class, never an unhandled rejection', async () => {
    const seen: Seen[] = [];
    const logger = new RecordingLogger();
    const app = await cqrsApp('a', seen, { storeUrl: 'memory:' }, {}, logger);
    try {
      const cqrs = app.get(CqrsEventBus);
      let awaited: unknown;
      const unhandled = await withoutUnhandledRejections(async () => {
        cqrs.publish(new Untyped(1)); // ignored, as cqrs callers do
        awaited = await Promise.resolve(cqrs.publish(new Untyped(2))).catch((e: unknown) => e);
        await cqrs.publish(new OrderShipped('after')); // still working
      });
      expect(unhandled).toEqual([]);
      expect(awaited).toBeInstanceOf(EventBusError);
      expect((awaited as EventBusError).code).toBe('INVALID_EVENT');
      const errors = logger.records.filter((r) => r.level === 'error' && r.context === 'EventBus').map((r) => r.message);
      expect(errors).toEqual([
        expect.stringMatching(/^publish of Untyped failed: Untyped has no bus event type: decorate it with @BusEventType/),
        expect.stringMatching(/^publish of Untyped failed: Untyped has no bus event type/),
      ]);
      await eventually(() => ofApp(seen, 'a', OrderShipped).length === 1, 'the next event handled');
      expect((await app.get(EventBus).getEvents()).events.map((e) => e.type)).toEqual(['order.shipped']);
    } finally {
      await app.close();
    }
  });

  it('an @EventsHandler for an event class without a type name fails bootstrap with INVALID_CONFIG naming both', async () => {
    @EventsHandler(Untyped)
    class UntypedHandler implements IEventHandler<Untyped> {
      handle(): void {}
    }
    @Module({
      imports: [CqrsModule.forRoot(), EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined, isGlobal: true }), CqrsBridgeModule.forRoot()],
      providers: [UntypedHandler],
    })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
    const err = await app.init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect([(err as EventBusError).code, (err as EventBusError).message]).toEqual([
      'INVALID_CONFIG',
      expect.stringMatching(/^@EventsHandler UntypedHandler: Untyped has no bus event type/),
    ]);
    await app.close();
  });

  it('a throwing handler is logged by cqrs and does not stop the bridge', async () => {
    const seen: Seen[] = [];
    const logger = new RecordingLogger();
    const app = await cqrsApp('a', seen, { storeUrl: 'memory:' }, {}, logger);
    try {
      const cqrs = app.get(CqrsEventBus);
      await cqrs.publish(new OrderPlaced('boom', 'p1', 1));
      await cqrs.publish(new OrderPlaced('fine', 'p1', 2));
      await cqrs.publish(new OrderShipped('boom'));
      await cqrs.publish(new OrderShipped('fine'));
      await eventually(() => ofApp(seen, 'a', OrderShipped).length === 2, 'every event handled');
      expect((ofApp(seen, 'a', OrderPlaced) as OrderPlaced[]).map((e) => e.orderId)).toEqual(['boom', 'fine']);
      await eventually(() => ofApp(seen, 'a', ShipOrder).length === 2, 'the saga still running');
      expect(logger.records.filter((r) => r.level === 'error' && /unhandled exception/.test(r.message))).toHaveLength(2);
      expect(app.get(EventBus).metrics().handlerErrors).toBe(0);
    } finally {
      await app.close();
    }
  });
});

describe('@nestjs/cqrs bridge across instances (PostgreSQL)', () => {
  it('stores the row; both apps on the schema run their handlers once for events published by either', async () => {
    const store = await postgresStore();
    const seen: Seen[] = [];
    const a = await cqrsApp('a', seen, { storeUrl: store.url });
    const b = await cqrsApp('b', seen, { storeUrl: store.url });
    try {
      await a.get(CqrsEventBus).publish(new OrderPlaced('o1', 'p1', 5));
      await b.get(CqrsEventBus).publish(new OrderShipped('o1'));

      const pg = new Client({ connectionString: store.url.split('?')[0] });
      await pg.connect();
      const { rows } = await pg.query(`SELECT type, payload, project_id FROM ${store.schema}.event_bus_events ORDER BY position`);
      await pg.end();
      expect(rows).toEqual([
        { type: 'order.placed', payload: { orderId: 'o1', projectId: 'p1', total: 5 }, project_id: 'p1' },
        { type: 'order.shipped', payload: { orderId: 'o1' }, project_id: null },
      ]);

      await eventually(
        () => ['a', 'b'].every((app) => ofApp(seen, app, OrderShipped).length === 1 && ofApp(seen, app, OrderPlaced).length === 1),
        'both events in both apps',
      );
      await new Promise((r) => setTimeout(r, 200)); // no duplicate arrives late
      for (const app of ['a', 'b']) {
        expect(ofApp(seen, app, OrderPlaced).map((e) => (e as OrderPlaced).describe())).toEqual(['o1=5']);
        expect(ofApp(seen, app, OrderShipped)).toHaveLength(1);
      }
    } finally {
      await a.close();
      await b.close();
      await store.drop();
    }
  });

  it('with a group, each event is handled by one of the apps', async () => {
    const store = await postgresStore();
    const seen: Seen[] = [];
    const group: CqrsBridgeModuleOptions = { group: 'orders', partitions: 4, leaseMs: 30_000 };
    const a = await cqrsApp('a', seen, { storeUrl: store.url }, group);
    const b = await cqrsApp('b', seen, { storeUrl: store.url }, group);
    try {
      await new Promise((r) => setTimeout(r, 1000)); // both members hold partitions
      const ids = Array.from({ length: 20 }, (_, i) => `o${i}`);
      await a.get(CqrsEventBus).publishAll(ids.map((id, i) => new OrderPlaced(id, `project-${i % 5}`, i)));
      await eventually(() => seen.filter((s) => s.event instanceof OrderPlaced).length >= ids.length, 'every event handled');
      await new Promise((r) => setTimeout(r, 300)); // a duplicate would show up here
      const handled = seen.filter((s) => s.event instanceof OrderPlaced).map((s) => (s.event as OrderPlaced).orderId);
      expect([...handled].sort()).toEqual([...ids].sort());
    } finally {
      await a.close();
      await b.close();
      await store.drop();
    }
  });
});

describe('the cqrs entry', () => {
  /**
   * Whether requiring `entry` (by package name, from the cwd) in a fresh Node asks for @nestjs/cqrs:
   * its resolution is refused there, so this holds whether cqrs is CommonJS or ESM-only.
   */
  function needsCqrs(entry: string): boolean {
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === '@nestjs/cqrs' || request.startsWith('@nestjs/cqrs/')) throw new Error('cqrs requested');
        return resolve.call(this, request, ...rest);
      };
      let asked = false;
      try { require(${JSON.stringify(entry)}); } catch (err) { if (!/cqrs requested/.test(String(err && err.message))) throw err; asked = true; }
      process.stdout.write(JSON.stringify(asked));`;
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as boolean;
  }

  it('@situs/event-bus and @situs/event-bus/nest never load @nestjs/cqrs; @situs/event-bus/nest/cqrs does', () => {
    expect(['@situs/event-bus', '@situs/event-bus/nest', '@situs/event-bus/nest/cqrs'].map(needsCqrs)).toEqual([false, false, true]);
  });

  it('its ESM entry gives the same classes as the CommonJS one', () => {
    const script = `
      import * as esm from '@situs/event-bus/nest/cqrs';
      import { createRequire } from 'node:module';
      const cjs = createRequire(process.cwd() + '/')('@situs/event-bus/nest/cqrs');
      process.stdout.write(JSON.stringify(esm.CqrsBridgeModule === cjs.CqrsBridgeModule && esm.BusEventType === cjs.BusEventType));`;
    expect(JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }))).toBe(true);
  });
});
