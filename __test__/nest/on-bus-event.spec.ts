import 'reflect-metadata';
import { Inject, Injectable, Module, type OnApplicationBootstrap, type OnModuleInit, Scope } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventBus, EventBusError, type BusEvent } from '@situs/event-bus';
import { EventBusModule, EventBusService, OnBusEvent } from '@situs/event-bus/nest';
import { sqliteStore } from '../stores';
import { eventually, RecordingLogger } from './nest-app';

jest.setTimeout(60_000);

describe('@OnBusEvent', () => {
  it('gets events published in onModuleInit and onApplicationBootstrap, once each, in order, then live ones', async () => {
    const seen: Array<[string, string, number]> = [];

    @Injectable()
    class EarlyPublisher implements OnModuleInit {
      constructor(@Inject(EventBusService) private readonly events: EventBusService) {}
      async onModuleInit(): Promise<void> {
        await this.events.publish({ type: 'order.placed', payload: 'module-init' });
      }
    }

    @Injectable()
    class LatePublisher implements OnApplicationBootstrap {
      constructor(@Inject(EventBusService) private readonly events: EventBusService) {}
      async onApplicationBootstrap(): Promise<void> {
        await this.events.publish({ type: 'order.shipped', payload: 'app-bootstrap' });
      }
    }

    @Injectable()
    class Orders {
      @OnBusEvent('order.*')
      all(e: BusEvent): void {
        seen.push(['all', e.payload as string, e.position]);
      }

      // Two decorators on one method: one subscription each.
      @OnBusEvent('order.placed')
      @OnBusEvent(['order.shipped', 'order.cancelled'])
      some(e: BusEvent): void {
        seen.push(['some', e.payload as string, e.position]);
      }
    }

    const store = sqliteStore();
    // A stored event from before this app started must not be replayed.
    const old = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
    await old.publish({ type: 'order.placed', payload: 'before' });
    await old.close();

    // Publishers first and last, so bootstrap hooks run both before and after discovery.
    @Module({
      imports: [EventBusModule.forRoot({ storeUrl: store.url, logger: () => undefined })],
      providers: [EarlyPublisher, Orders, LatePublisher],
    })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false });
    await app.init();
    const bus = app.get(EventBus);
    await bus.publish({ type: 'order.cancelled', payload: 'live' });
    await eventually(() => seen.length === 6, 'six deliveries');
    await new Promise((r) => setTimeout(r, 100)); // no duplicate arrives late
    const byHandler = (name: string) => seen.filter((s) => s[0] === name);
    // One subscription: in position order.
    expect(byHandler('all').map((s) => s[1])).toEqual(['module-init', 'app-bootstrap', 'live']);
    const positions = byHandler('all').map((s) => s[2]);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    // Two subscriptions on one method (one per decorator) run side by side: each event once.
    const some = byHandler('some').sort((a, b) => a[2] - b[2]);
    expect(some.map((s) => s[1])).toEqual(['module-init', 'app-bootstrap', 'live']);
    expect(some.map((s) => s[2])).toEqual(positions);
    await app.close();
    await store.drop();
  });

  it('a throwing handler is logged with its class and method and does not stop other handlers or later events', async () => {
    const good: string[] = [];
    @Injectable()
    class Flaky {
      @OnBusEvent('job.*')
      explode(e: BusEvent): void {
        if (e.payload === 'bad') throw new Error('kaboom');
      }
      @OnBusEvent('job.*')
      async fine(e: BusEvent): Promise<void> {
        good.push(e.payload as string);
      }
    }
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], providers: [Flaky] })
    class AppModule {}
    const logger = new RecordingLogger();
    const app = await NestFactory.create(AppModule, { logger });
    await app.init();
    const bus = app.get(EventBus);
    await bus.publish({ type: 'job.run', payload: 'bad' });
    await bus.publish({ type: 'job.run', payload: 'ok' });
    await eventually(() => good.length === 2, 'both events on the good handler');
    await eventually(() => bus.metrics().handlerErrors === 1, 'the failure counted');
    const errors = logger.records.filter((r) => r.level === 'error' && r.context === 'EventBus');
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/^Flaky\.explode failed on job\.run at position \d+: kaboom$/);
    expect(good).toEqual(['bad', 'ok']);
    await app.close();
  });

  it('a group handler is a durable consumer group member: failures are retried, then dead-lettered', async () => {
    const calls: string[] = [];
    @Injectable()
    class Billing {
      @OnBusEvent('invoice.*', { group: 'billing', from: 'beginning', maxAttempts: 2, backoff: { initialMs: 10 } })
      charge(e: BusEvent): void {
        calls.push(e.payload as string);
        if (e.payload === 'poison') throw new Error('cannot charge');
      }
    }
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], providers: [Billing] })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false });
    await app.init();
    const service = app.get(EventBusService);
    await service.publish({ type: 'invoice.paid', payload: 'poison' });
    await service.publish({ type: 'invoice.paid', payload: 'fine' });
    await eventually(() => calls.includes('fine'), 'the next event after the dead letter');
    expect(calls).toEqual(['poison', 'poison', 'fine']);
    const dead = await service.deadLetters({ group: 'billing' });
    expect(dead.map((d) => [d.event.payload, d.attempts, d.error])).toEqual([['poison', 2, 'cannot charge']]);
    await app.close();
  });

  it.each([
    ['request-scoped', Scope.REQUEST],
    ['transient', Scope.TRANSIENT],
  ])('a %s provider with a handler is refused at bootstrap, naming the class and method', async (_name, scope) => {
    @Injectable({ scope })
    class Scoped {
      @OnBusEvent('a.b')
      handle(): void {}
    }
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], providers: [Scoped] })
    class AppModule {}
    const app = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
    const err = await app.init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect((err as EventBusError).code).toBe('INVALID_CONFIG');
    expect((err as EventBusError).message).toContain('Scoped.handle');
    await app.close();
  });
});
