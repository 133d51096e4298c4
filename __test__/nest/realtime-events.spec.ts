import 'reflect-metadata';
import http from 'node:http';
import { Controller, Headers, Inject, type MessageEvent, Module, Sse } from '@nestjs/common';
import { Observable } from 'rxjs';
import { Client } from 'pg';
import { EventBus, EventType } from '@situs/event-bus';
import { EventBusModule, legacyEventType, ProjectEventType, RealtimeEventsService } from '@situs/event-bus/nest';
import { postgresStore } from '../stores';
import { eventually, RecordingLogger, startApp } from './nest-app';

jest.setTimeout(60_000);

describe('legacy event names', () => {
  it('PROJECT_CREATED, project_created and project.created all become project.created', () => {
    expect(['PROJECT_CREATED', 'project_created', 'project.created'].map(legacyEventType)).toEqual([
      'project.created',
      'project.created',
      'project.created',
    ]);
  });

  it('every EventType: its key, its lower-case key and its value map to the value', () => {
    const table = Object.entries(EventType).map(([key, value]) => [key, legacyEventType(key), legacyEventType(key.toLowerCase()), legacyEventType(value)]);
    for (const [key, fromKey, fromLower, fromValue] of table) {
      const value = EventType[key as keyof typeof EventType];
      expect([key, fromKey, fromLower, fromValue]).toEqual([key, value, value, value]);
    }
    expect(legacyEventType('PROJECT_STATUS_CHANGED')).toBe('project.status_changed');
    expect(legacyEventType('MENU_TYPE_CREATED')).toBe('menu.type_created');
    // Names that are not snake case pass unchanged (the core validates them).
    expect(['order.placed', 'Order', 'a.b_c'].map(legacyEventType)).toEqual(['order.placed', 'Order', 'a.b_c']);
  });

  it('ProjectEventType has the legacy name of every EventType value', () => {
    expect(Object.keys(ProjectEventType)).toEqual(Object.keys(EventType));
    expect(ProjectEventType.PROJECT_STATUS_CHANGED).toBe('PROJECT_STATUS_CHANGED');
  });
});

describe('RealtimeEventsService.publish (PostgreSQL rows)', () => {
  it('stores legacy publishes as dot types with projectId/tenantId/userId from the payload; failures are logged and counted', async () => {
    const store = await postgresStore();
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: store.url, logger: () => undefined, validation: { maxPayloadBytes: 1000 } })] })
    class AppModule {}
    const logger = new RecordingLogger();
    const { app } = await startApp(AppModule, logger);
    const realtime = app.get(RealtimeEventsService);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    let closed = false;
    try {
      expect(realtime.publish(ProjectEventType.PROJECT_CREATED, { projectId: 'p1', tenantId: 't1', userId: 'u1', name: 'A' })).toBeUndefined();
      realtime.publish('project_status_changed', { projectId: 'p1', status: 'live', userId: 42 });
      realtime.publish('project.deleted');
      realtime.publish('bad type!', { projectId: 'p1' }); // refused by validation
      realtime.publish('project.updated', { projectId: 'p1', blob: 'x'.repeat(2000) }); // too large
      realtime.publish(ProjectEventType.PROJECT_UPDATED, { projectId: 'p1' }); // still working after failures
      await eventually(() => realtime.failedPublishes === 2, 'two failures');
      const bus = app.get(EventBus);
      await eventually(async () => (await bus.getEvents()).events.length === 4, 'four stored');
      const pg = new Client({ connectionString: store.url.split('?')[0] });
      await pg.connect();
      const { rows } = await pg.query(
        `SELECT type, project_id, tenant_id, user_id FROM ${store.schema}.event_bus_events ORDER BY position`,
      );
      await pg.end();
      expect(rows).toEqual([
        { type: 'project.created', project_id: 'p1', tenant_id: 't1', user_id: 'u1' },
        { type: 'project.status_changed', project_id: 'p1', tenant_id: null, user_id: null },
        { type: 'project.deleted', project_id: null, tenant_id: null, user_id: null },
        { type: 'project.updated', project_id: 'p1', tenant_id: null, user_id: null },
      ]);
      const errors = logger.records.filter((r) => r.level === 'error' && r.context === 'EventBus').map((r) => r.message);
      // The two failures settle in either order (validation and size checks differ).
      expect(errors).toHaveLength(2);
      expect(errors).toEqual(
        expect.arrayContaining([expect.stringContaining('bad type!'), expect.stringMatching(/project\.updated.*maxPayloadBytes/)]),
      );
      // After close the service still returns normally; the failure is counted.
      await app.close();
      closed = true;
      realtime.publish('project.created', { projectId: 'p1' });
      await eventually(() => realtime.failedPublishes === 3, 'the publish after close to fail quietly');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      if (!closed) await app.close();
      await store.drop();
    }
  });

  it('mapEventType overrides the mapping', async () => {
    @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined, mapEventType: (t) => `legacy.${t.toLowerCase()}` })] })
    class AppModule {}
    const { app } = await startApp(AppModule);
    app.get(RealtimeEventsService).publish('PROJECT_CREATED', {});
    const bus = app.get(EventBus);
    await eventually(async () => (await bus.getEvents()).events.length === 1, 'the event');
    expect((await bus.getEvents()).events[0].type).toBe('legacy.project_created');
    await app.close();
  });
});

describe('RealtimeEventsService.stream in an @Sse() controller', () => {
  @Controller()
  class EventsController {
    constructor(@Inject(RealtimeEventsService) private readonly realtime: RealtimeEventsService) {}

    @Sse('events')
    events(@Headers('last-event-id') lastEventId?: string): Observable<MessageEvent> {
      return this.realtime.stream({ types: ['PROJECT_CREATED'], lastEventId });
    }
  }

  @Module({ imports: [EventBusModule.forRoot({ storeUrl: 'memory:', logger: () => undefined })], controllers: [EventsController] })
  class AppModule {}

  it('replays after Last-Event-ID, then live; a client disconnect releases the native stream', async () => {
    const { app, url } = await startApp(AppModule);
    const bus = app.get(EventBus);
    const realtime = app.get(RealtimeEventsService);
    const first = await bus.publish({ type: 'project.created', payload: { n: 1 } });
    await bus.publish({ type: 'project.created', payload: { n: 2 } });
    let body = '';
    const req = http.get(`${url}/events`, { headers: { 'last-event-id': String(first.position) } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
    });
    req.on('error', () => undefined);
    await eventually(() => body.includes('"n":2'), 'the replayed event');
    realtime.publish('project.deleted', { n: 3 }); // not in the filter
    realtime.publish('PROJECT_CREATED', { n: 4 });
    await eventually(() => body.includes('"n":4'), 'the live event');
    const ns = [...body.matchAll(/"n":(\d)/g)].map((m) => Number(m[1]));
    expect(ns).toEqual([2, 4]);
    expect(body).toMatch(/event: project.created/);
    expect(bus.metrics().sseConnections).toBe(1);
    req.destroy();
    await eventually(() => bus.metrics().sseConnections === 0, 'the native stream to be released');
    await app.close();
  });
});
