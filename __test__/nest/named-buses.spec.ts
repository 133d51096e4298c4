import 'reflect-metadata';
import { Controller, Get, Inject, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { EventBus, type BusEvent } from '@situs/event-bus';
import {
  EventBusModule,
  EventBusPlugin,
  EventBusPluginRegistry,
  EventBusService,
  getEventBusToken,
  getPluginRegistryToken,
  getRealtimeEventsToken,
  InjectEventBus,
  OnBusEvent,
  RealtimeEventsService,
} from '@situs/event-bus/nest';
import { EventBusHealthIndicator } from '@situs/event-bus/nest/health';
import { sqliteStore } from '../stores';
import { eventually, startApp } from './nest-app';

jest.setTimeout(60_000);

describe('named buses', () => {
  it('two buses in one app: each injected by name, each with its own handlers, plugins, realtime service and health', async () => {
    const main = sqliteStore();
    const audit = sqliteStore();
    const seen: Array<[string, string]> = [];

    @Injectable()
    class Handlers {
      @OnBusEvent('**')
      onMain(e: BusEvent): void {
        seen.push(['main', e.type]);
      }
      @OnBusEvent('**', { bus: 'audit' })
      onAudit(e: BusEvent): void {
        seen.push(['audit', e.type]);
      }
    }

    @EventBusPlugin({ name: 'audit-echo', version: '1.0.0', bus: 'audit' })
    @Injectable()
    class AuditPlugin {
      @OnBusEvent('login.*')
      onLogin(e: BusEvent): void {
        seen.push(['audit-plugin', e.type]);
      }
    }

    @Injectable()
    class Users {
      constructor(
        @InjectEventBus() readonly events: EventBusService,
        @InjectEventBus('audit') readonly auditEvents: EventBusService,
        @Inject(EventBusService) readonly byClass: EventBusService,
        @Inject(EventBus) readonly bus: EventBus,
        @Inject(getEventBusToken('audit')) readonly auditBus: EventBus,
        @Inject(EventBusPluginRegistry) readonly plugins: EventBusPluginRegistry,
        @Inject(getPluginRegistryToken('audit')) readonly auditPlugins: EventBusPluginRegistry,
        @Inject(getRealtimeEventsToken('audit')) readonly auditRealtime: RealtimeEventsService,
      ) {}
    }

    @Controller()
    class HealthController {
      constructor(
        @Inject(HealthCheckService) private readonly health: HealthCheckService,
        @Inject(EventBusHealthIndicator) private readonly busHealth: EventBusHealthIndicator,
      ) {}
      @Get('health')
      @HealthCheck()
      check() {
        return this.health.check([() => this.busHealth.isHealthy('main'), () => this.busHealth.isHealthy('audit', { bus: 'audit' })]);
      }
    }

    @Module({
      imports: [
        EventBusModule.forRoot({ storeUrl: main.url, logger: () => undefined, isGlobal: true }),
        EventBusModule.forRoot({ name: 'audit', storeUrl: audit.url, logger: () => undefined, isGlobal: true }),
        TerminusModule,
      ],
      controllers: [HealthController],
      providers: [Handlers, AuditPlugin, Users, EventBusHealthIndicator],
    })
    class AppModule {}

    const { app, url } = await startApp(AppModule);
    const users = app.get(Users);
    // Identity checked as booleans: a failing toBe would try to print the whole native bus.
    // A named bus provides nothing under the classes, so app.get() finds the unnamed bus's.
    expect(app.get(EventBusService) === users.events).toBe(true);
    expect(app.get(EventBus) === users.bus).toBe(true);
    expect(app.get(EventBusPluginRegistry) === users.plugins).toBe(true);
    expect(app.get(RealtimeEventsService) === users.auditRealtime).toBe(false);
    expect(users.events === users.byClass).toBe(true);
    expect(users.bus === users.events.bus).toBe(true);
    expect(users.auditEvents === users.events).toBe(false);
    expect(users.auditEvents).toBeInstanceOf(EventBusService);
    expect(users.auditBus === users.auditEvents.bus).toBe(true);
    expect(users.auditPlugins.list().map((p) => p.name)).toEqual(['audit-echo']);
    expect(users.plugins.list()).toEqual([]);

    await users.events.publish({ type: 'order.placed', payload: null });
    await users.auditEvents.publish({ type: 'login.succeeded', payload: null });
    users.auditRealtime.publish('LOGIN_FAILED', { userId: 'u1' });
    await eventually(() => seen.length === 5, 'five deliveries');
    expect(seen.sort()).toEqual([
      ['audit', 'login.failed'],
      ['audit', 'login.succeeded'],
      ['audit-plugin', 'login.failed'],
      ['audit-plugin', 'login.succeeded'],
      ['main', 'order.placed'],
    ]);
    expect((await users.events.getEvents()).events.map((e) => e.type)).toEqual(['order.placed']);
    expect((await users.auditEvents.getEvents()).events.map((e) => [e.type, e.userId])).toEqual([
      ['login.succeeded', undefined],
      ['login.failed', 'u1'],
    ]);

    const ok = { ok: true };
    expect(await users.auditEvents.health()).toEqual({
      healthy: true,
      latencyMs: expect.any(Number),
      checks: { store: ok, listener: ok, webhookWorkers: ok, consumerGroups: ok },
    });
    const health = await (await fetch(`${url}/health`)).json();
    expect(health).toMatchObject({ status: 'ok', info: { main: { status: 'up' }, audit: { status: 'up' } } });

    await app.close();
    // Both buses were closed with the app.
    await expect(users.events.publish({ type: 'x.y', payload: null })).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(users.auditEvents.publish({ type: 'x.y', payload: null })).rejects.toMatchObject({ code: 'CLOSED' });
    await main.drop();
    await audit.drop();
  });

  it('a bad name fails bootstrap with INVALID_CONFIG naming the option', () => {
    expect(() => EventBusModule.forRoot({ name: 'no spaces', storeUrl: 'memory:' })).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('option name must be') }),
    );
    expect(() => EventBusModule.forRootAsync({ name: '', useFactory: () => ({ storeUrl: 'memory:' }) })).toThrow(/option name must be/);
  });

  it('without a name for a bus, a handler for a named bus that is not there is simply not subscribed anywhere else', async () => {
    const seen: string[] = [];
    @Injectable()
    class Handlers {
      @OnBusEvent('**', { bus: 'missing' })
      onMissing(e: BusEvent): void {
        seen.push(e.type);
      }
    }
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], providers: [Handlers] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    await app.get(EventBus).publish({ type: 'a.b', payload: null });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([]);
    await app.close();
  });
});
