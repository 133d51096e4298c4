import 'reflect-metadata';
import { Inject, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { ModuleRef, NestFactory } from '@nestjs/core';
import { EventBus, EventBusError, type BusEvent, type PublishedEvent } from '@situs/event-bus';
import { EventBusModule, EventBusPlugin, EventBusPluginRegistry, EventBusService, OnBusEvent } from '@situs/event-bus/nest';
import { sqliteStore } from '../stores';
import { eventually, RecordingLogger } from './nest-app';

jest.setTimeout(60_000);

/** What the plugins of one test saw, by plugin label. */
type Seen = Map<string, number[]>;
function record(seen: Seen, who: string, e: BusEvent): void {
  seen.set(who, [...(seen.get(who) ?? []), e.position]);
}

async function bootApp(providers: unknown[], logger: RecordingLogger | false = false) {
  const store = sqliteStore();
  @Module({
    imports: [EventBusModule.forRoot({ storeUrl: store.url, logger: () => undefined })],
    providers: providers as never[],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: logger === false ? false : logger });
  await app.init();
  return { app, bus: app.get(EventBus), registry: app.get(EventBusPluginRegistry), store };
}

async function pluginEvents(bus: EventBus): Promise<Array<[string, unknown]>> {
  const { events } = await bus.getEvents({ types: ['plugin.*'] });
  return events.map((e) => [e.type, e.payload]);
}

describe('@EventBusPlugin and EventBusPluginRegistry', () => {
  it('a plugin that is a provider is installed at bootstrap: its handlers get bootstrap publishes, its middleware runs, no event is published', async () => {
    const seen: Seen = new Map();

    @EventBusPlugin({ name: 'stamp', version: '1.0.0' })
    @Injectable()
    class StampPlugin {
      @OnBusEvent('order.*')
      onOrder(e: BusEvent): void {
        record(seen, 'stamp', e);
      }
      middleware(event: PublishedEvent): PublishedEvent {
        return { ...event, metadata: { ...event.metadata, stampedBy: 'stamp' } };
      }
    }

    @Injectable()
    class Boot implements OnModuleInit {
      constructor(@Inject(EventBusService) private readonly events: EventBusService) {}
      async onModuleInit(): Promise<void> {
        await this.events.publish({ type: 'order.placed', payload: 1 });
      }
    }

    const { app, bus, registry, store } = await bootApp([Boot, StampPlugin]);
    expect(registry.list()).toEqual([expect.objectContaining({ name: 'stamp', version: '1.0.0', handlers: 1, middleware: true })]);
    const live = await bus.publish({ type: 'order.shipped', payload: 2 });
    expect(live.metadata).toEqual({ stampedBy: 'stamp' });
    await eventually(() => seen.get('stamp')?.length === 2, 'both orders');
    expect(await pluginEvents(bus)).toEqual([]);
    await app.close();
    await store.drop();
  });

  it('install, update and uninstall at runtime: handlers and middleware come and go, each step is published, and the update neither misses nor repeats an event', async () => {
    const seen: Seen = new Map();

    @EventBusPlugin({ name: 'tally', version: '1.0.0' })
    class TallyV1 {
      // Slow, so that it lags behind the log when the update comes.
      @OnBusEvent('job.*')
      async onJob(e: BusEvent): Promise<void> {
        await new Promise((r) => setTimeout(r, 2));
        record(seen, 'tally', e);
      }
      middleware(event: PublishedEvent): PublishedEvent {
        return { ...event, metadata: { tally: 'v1' } };
      }
    }

    @EventBusPlugin({ name: 'tally', version: '2.0.0' })
    class TallyV2 {
      @OnBusEvent('job.*')
      async onJob(e: BusEvent): Promise<void> {
        await new Promise((r) => setTimeout(r, 2));
        record(seen, 'tally', e);
      }
      @OnBusEvent('report.*')
      onReport(e: BusEvent): void {
        record(seen, 'report', e);
      }
      middleware(event: PublishedEvent): PublishedEvent {
        return { ...event, metadata: { tally: 'v2' } };
      }
    }

    const { app, bus, registry, store } = await bootApp([]);
    const before = await bus.publish({ type: 'job.done', payload: 'before install' });
    const installed = await registry.install(new TallyV1());
    expect(installed).toEqual(expect.objectContaining({ name: 'tally', version: '1.0.0', handlers: 1, middleware: true }));
    expect((await bus.publish({ type: 'job.done', payload: 0 })).metadata).toEqual({ tally: 'v1' });

    // v1 lags behind these when the update comes, and more race the update: every job event
    // after the install is handled exactly once, by v1 or by v2.
    const lagging = await Promise.all(Array.from({ length: 200 }, (_, i) => bus.publish({ type: 'job.done', payload: i + 1 })));
    const racing = Array.from({ length: 100 }, (_, i) => bus.publish({ type: 'job.done', payload: 201 + i }));
    const updated = await registry.update(new TallyV2());
    const published = [...lagging, ...(await Promise.all(racing))];
    expect((seen.get('tally') ?? []).length).toBeLessThan(published.length);
    expect(updated).toEqual(expect.objectContaining({ version: '2.0.0', handlers: 2 }));
    expect((await bus.publish({ type: 'report.daily', payload: null })).metadata).toEqual({ tally: 'v2' });
    const last = await bus.publish({ type: 'job.done', payload: 'last' });

    await eventually(() => (seen.get('tally') ?? []).includes(last.position!), 'the last job');
    const tally = seen.get('tally') ?? [];
    const expected = (await bus.getEvents({ types: ['job.*'], afterPosition: before.position!, limit: 1000 })).events.map((e) => e.position);
    expect(tally).toEqual(expected);
    expect(expected).toHaveLength(published.length + 2);
    expect(seen.get('report')).toHaveLength(1);

    await registry.uninstall('tally');
    expect(registry.list()).toEqual([]);
    const after = await bus.publish({ type: 'job.done', payload: 'after uninstall' });
    expect(after.metadata).toBeUndefined();
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.get('tally')).not.toContain(after.position!);

    expect(await pluginEvents(bus)).toEqual([
      ['plugin.installed', { name: 'tally', version: '1.0.0' }],
      ['plugin.updated', { name: 'tally', version: '2.0.0', previousVersion: '1.0.0' }],
      ['plugin.uninstalled', { name: 'tally', version: '2.0.0' }],
    ]);
    await app.close();
    await store.drop();
  });

  it('a class is installed with its dependencies injected', async () => {
    const seen: string[] = [];
    @Injectable()
    class Greeter {
      greet(e: BusEvent): string {
        return `hello ${String(e.payload)}`;
      }
    }

    @EventBusPlugin({ name: 'greet', version: '0.1.0' })
    class GreetPlugin {
      constructor(@Inject(Greeter) private readonly greeter: Greeter) {}
      @OnBusEvent('user.created')
      onUser(e: BusEvent): void {
        seen.push(this.greeter.greet(e));
      }
    }

    // As an app installs one: from a service of the module that provides the dependencies.
    @Injectable()
    class Installer {
      constructor(
        @Inject(EventBusPluginRegistry) private readonly registry: EventBusPluginRegistry,
        @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
      ) {}
      install() {
        return this.registry.install(GreetPlugin, { moduleRef: this.moduleRef });
      }
    }

    const { app, bus, store } = await bootApp([Greeter, Installer]);
    await app.get(Installer).install();
    await bus.publish({ type: 'user.created', payload: 'ada' });
    await eventually(() => seen.length === 1, 'the greeting');
    expect(seen).toEqual(['hello ada']);
    await app.close();
    await store.drop();
  });

  it('a plugin whose handler and middleware throw breaks neither the bus nor another plugin', async () => {
    const seen: Seen = new Map();

    @EventBusPlugin({ name: 'broken', version: '1.0.0' })
    class Broken {
      @OnBusEvent('**')
      onAny(): void {
        throw new Error('handler boom');
      }
      middleware(): never {
        throw new Error('middleware boom');
      }
    }

    @EventBusPlugin({ name: 'healthy', version: '1.0.0' })
    class Healthy {
      @OnBusEvent('**')
      onAny(e: BusEvent): void {
        record(seen, 'healthy', e);
      }
      middleware(event: PublishedEvent): PublishedEvent {
        return { ...event, metadata: { ...event.metadata, healthy: true } };
      }
    }

    const logger = new RecordingLogger();
    const { app, bus, registry, store } = await bootApp([], logger);
    await registry.install(new Broken());
    await registry.install(new Healthy());
    const events = await Promise.all([1, 2, 3].map((n) => bus.publish({ type: 'task.run', payload: n })));
    for (const e of events) expect(e.metadata).toEqual({ healthy: true });
    const positions = events.map((e) => e.position!);
    await eventually(() => positions.every((p) => seen.get('healthy')?.includes(p)), 'healthy plugin deliveries');
    await eventually(() => logger.records.filter((r) => r.message.includes('handler boom')).length >= 3, 'handler failures logged');
    const logged = logger.records.map((r) => r.message).join('\n');
    expect(logged).toContain('broken@1.0.0 (Broken).onAny failed on task.run');
    expect(logged).toContain('plugin broken@1.0.0 (Broken) middleware failed on task.run: middleware boom');
    expect(bus.metrics().handlerErrors).toBeGreaterThanOrEqual(3);
    await app.close();
    await store.drop();
  });

  it('refuses what it cannot install: no decorator, a name installed twice, an unknown name, bad metadata', async () => {
    @EventBusPlugin({ name: 'once', version: '1' })
    class Once {}
    class Plain {}

    const { app, registry, store } = await bootApp([]);
    await registry.install(new Once());
    await expect(registry.install(new Once())).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: 'plugin once is installed already (update it instead)' });
    await expect(registry.install(new Plain())).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: 'plugin Plain has no @EventBusPlugin({ name, version })' });
    await expect(registry.update(new Plain())).rejects.toBeInstanceOf(EventBusError);
    await expect(registry.uninstall('nope')).rejects.toMatchObject({ code: 'NOT_FOUND', message: 'plugin nope is not installed' });
    expect(() => EventBusPlugin({ name: '', version: '1' })).toThrow('@EventBusPlugin: name must be a non-empty string (up to 200 characters)');
    expect(() => EventBusPlugin({ name: 'x' } as never)).toThrow(/version must be a non-empty string/);
    expect(registry.list().map((p) => p.name)).toEqual(['once']);
    await app.close();
    await store.drop();
  });
});
