import 'reflect-metadata';
import { Controller, Get, Inject, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventBus, EventBusError } from '@situs/event-bus';
import { EventBusModule, EventBusService, nestLogSink, RealtimeEventsService, type EventBusModuleOptions } from '@situs/event-bus/nest';
import { RecordingLogger, startApp } from './nest-app';

jest.setTimeout(30_000);

@Injectable()
class Config {
  readonly storeUrl = 'memory:';
}

@Module({ providers: [Config], exports: [Config] })
class ConfigModule {}

@Injectable()
class OptionsFactory {
  createEventBusOptions(): EventBusModuleOptions {
    return { storeUrl: 'memory:', logger: () => undefined };
  }
}

@Module({ providers: [OptionsFactory], exports: [OptionsFactory] })
class OptionsModule {}

/** Boots an app context around `imports`, returns what it provides, closes it. */
async function withContext<T>(imports: unknown[], use: (get: <V>(token: unknown) => V) => Promise<T>): Promise<T> {
  @Module({ imports: imports as never[] })
  class AppModule {}
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  try {
    return await use((token) => app.get(token as never, { strict: false }));
  } finally {
    await app.close();
  }
}

describe('EventBusModule', () => {
  it('forRoot opens the bus at bootstrap, provides it, and app.close() closes it', async () => {
    let bus!: EventBus;
    await withContext([EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], async (get) => {
      bus = get<EventBus>(EventBus);
      expect(bus).toBeInstanceOf(EventBus);
      expect(bus.closed).toBe(false);
      const service = get<EventBusService>(EventBusService);
      expect(service.bus).toBe(bus);
      const e = await service.publish({ type: 'order.placed', payload: { n: 1 } });
      expect((await bus.getEvents()).events.map((x) => x.id)).toEqual([e.id]);
    });
    expect(bus.closed).toBe(true);
  });

  it.each([
    ['useFactory + inject from imports', { imports: [ConfigModule], inject: [Config], useFactory: (c: Config) => ({ storeUrl: c.storeUrl, logger: () => undefined }) }],
    ['useClass', { useClass: OptionsFactory }],
    ['useExisting', { imports: [OptionsModule], useExisting: OptionsFactory }],
  ])('forRootAsync with %s', async (_name, async) => {
    await withContext([EventBusModule.forRootAsync(async as never)], async (get) => {
      const service = get<EventBusService>(EventBusService);
      const e = await service.publish({ type: 'a.b', payload: 1 });
      expect(e.stored).toBe(true);
      expect((await service.getEvents()).events).toHaveLength(1);
    });
  });

  it('isGlobal makes the services injectable in modules that do not import it', async () => {
    @Injectable()
    class Consumer {
      constructor(@Inject(RealtimeEventsService) readonly realtime: RealtimeEventsService) {}
    }
    @Module({ providers: [Consumer] })
    class FeatureModule {}
    await withContext([EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined, isGlobal: true }), FeatureModule], async (get) => {
      expect(get<Consumer>(Consumer).realtime).toBeInstanceOf(RealtimeEventsService);
    });
    // Without isGlobal the same feature module cannot resolve it.
    @Module({ providers: [Consumer] })
    class LocalFeature {}
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined }), LocalFeature] })
    class NotGlobal {}
    await expect(NestFactory.createApplicationContext(NotGlobal, { logger: false, abortOnError: false })).rejects.toThrow(
      /RealtimeEventsService/,
    );
  });

  it.each([
    [{ storeUrl: 'memory:', mapEventType: 'upper' }, 'mapEventType'],
    [{ storeUrl: 'memory:', batch: { maxSize: -1 } }, 'batch.maxSize'],
    [{ storeUrl: 'memory:', nope: true }, 'nope'],
  ])('a misconfigured module fails bootstrap with INVALID_CONFIG naming the option (%j)', async (options, named) => {
    @Module({ imports: [EventBusModule.forRoot({ logger: () => undefined, ...(options as object) })] })
    class Bad {}
    const err = await NestFactory.createApplicationContext(Bad, { logger: false, abortOnError: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect((err as EventBusError).code).toBe('INVALID_CONFIG');
    expect((err as EventBusError).message).toContain(named);
  });

  it("the bus's log records go to Nest's Logger with context EventBus, levels mapped", async () => {
    @Controller()
    class Ping {
      @Get('ping')
      ping(): string {
        return 'pong';
      }
    }
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logLevel: 'debug' })], controllers: [Ping] })
    class Logged {}
    const logger = new RecordingLogger();
    const { app } = await startApp(Logged, logger);
    const bus = app.get(EventBus);
    // A handler failure is a warning or an error in the core's log.
    bus.subscribe('x.y', () => {
      throw new Error('handler boom');
    });
    await bus.publish({ type: 'x.y', payload: 1 });
    await app.close();
    const ours = logger.records.filter((r) => r.context === 'EventBus');
    expect(ours.length).toBeGreaterThan(0);
    expect(ours.some((r) => r.level === 'log')).toBe(true);
    const failure = ours.find((r) => r.message.includes('handler boom'));
    expect(failure).toBeDefined();
    expect(['warn', 'error']).toContain(failure!.level);
  });

  it('nestLogSink maps error/warn/info/debug/trace to error/warn/log/debug/verbose, fields appended', () => {
    const logger = new RecordingLogger();
    const sink = nestLogSink(logger);
    for (const level of ['error', 'warn', 'info', 'debug', 'trace'] as const) sink({ level, target: 't', message: level, fields: {} });
    sink({ level: 'info', target: 't', message: 'with', fields: { n: 1 } });
    expect(logger.records.map((r) => [r.level, r.message])).toEqual([
      ['error', 'error'],
      ['warn', 'warn'],
      ['log', 'info'],
      ['debug', 'debug'],
      ['verbose', 'trace'],
      ['log', 'with {"n":1}'],
    ]);
  });
});
