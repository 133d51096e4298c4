// The Nest module in an ESM-only NestJS 12 app, from the packed tarballs: bootstrap publishes are
// not lost, @OnBusEvent handlers run, the drop-in RealtimeEventsService publishes and streams
// (@Sse), the terminus indicator answers, and closing the app closes the bus.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Controller, Get, Injectable, Module, type MessageEvent, type OnModuleInit, Sse } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { EventBus, type BusEvent } from '@situs/event-bus';
import { EventBusModule, EventBusService, OnBusEvent, RealtimeEventsService } from '@situs/event-bus/nest';
import { EventBusHealthIndicator } from '@situs/event-bus/nest/health';
import type { Observable } from 'rxjs';

const seen: BusEvent[] = [];

@Injectable()
class ProjectHandlers {
  @OnBusEvent('project.*')
  onProject(event: BusEvent): void {
    seen.push(event);
  }
}

@Injectable()
class BootPublisher implements OnModuleInit {
  constructor(private readonly realtime: RealtimeEventsService) {}

  onModuleInit(): void {
    // Before any handler is registered: it must still reach them.
    this.realtime.publish('PROJECT_CREATED', { projectId: 'p1', name: 'Apollo' });
  }
}

@Controller()
class AppController {
  constructor(
    private readonly realtime: RealtimeEventsService,
    private readonly health: HealthCheckService,
    private readonly busHealth: EventBusHealthIndicator,
  ) {}

  @Sse('events')
  events(): Observable<MessageEvent> {
    return this.realtime.stream({ types: ['project.*'] });
  }

  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.busHealth.isHealthy('eventBus')]);
  }
}

@Module({
  imports: [EventBusModule.forRoot({ storeUrl: 'memory:', isGlobal: true }), TerminusModule],
  controllers: [AppController],
  providers: [ProjectHandlers, BootPublisher, EventBusHealthIndicator],
})
class AppModule {}

async function until(check: () => boolean, what: string): Promise<void> {
  // A guard against a hang, not a timing assertion.
  for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), `timed out waiting for ${what}`);
}

/** Reads SSE messages until one carries data; returns its fields. */
async function firstMessage(body: ReadableStream<Uint8Array>): Promise<{ id?: string; data: { type: string; id: string } }> {
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true });
    for (const block of text.split('\n\n').slice(0, -1)) {
      const lines = block.split('\n');
      const data = lines.find((l) => l.startsWith('data:'));
      if (data) return { id: lines.find((l) => l.startsWith('id:'))?.slice(3).trim(), data: JSON.parse(data.slice(5)) };
    }
  }
  throw new Error('the stream ended before a message');
}

test('EventBusModule in a NestJS 12 ESM app', async () => {
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = await app.getUrl();
  const bus = app.get(EventBus);
  const service = app.get(EventBusService);
  try {
    await until(() => seen.length === 1, 'the event published in onModuleInit');
    assert.equal(seen[0].type, 'project.created');
    assert.equal(seen[0].projectId, 'p1');

    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).info.eventBus.status, 'up');

    const aborter = new AbortController();
    const res = await fetch(`${url}/events`, { signal: aborter.signal });
    assert.equal(res.status, 200);
    const reading = firstMessage(res.body!);
    const published = await service.publish({ type: 'project.updated', payload: { n: 2 }, projectId: 'p1' });
    const message = await reading;
    assert.equal(message.data.id, published.id);
    aborter.abort();

    await until(() => seen.length === 2, 'the handler to see the second event');
    assert.deepEqual(
      seen.map((e) => e.type),
      ['project.created', 'project.updated'],
    );
  } finally {
    await app.close();
  }
  assert.equal(bus.closed, true);
});
