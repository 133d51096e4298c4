import 'reflect-metadata';
import { Controller, Headers, MessageEvent, Module, Sse } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventSource } from 'eventsource';
import { Observable } from 'rxjs';
import { EventBus } from '@situs/event-bus';

jest.setTimeout(60_000);

let bus: EventBus;

@Controller()
class EventsController {
  @Sse('events')
  events(@Headers('last-event-id') lastEventId?: string): Observable<MessageEvent> {
    // Unsubscribing (the client went away) ends the stream at once through return().
    return new Observable<MessageEvent>((subscriber) => {
      const stream = bus.sse.stream({ types: ['order.*'], lastEventId });
      void (async () => {
        for await (const m of stream) subscriber.next({ id: m.id, type: m.type, data: m.data ?? {} });
        subscriber.complete();
      })().catch((err) => subscriber.error(err));
      return () => void stream.return?.();
    });
  }
}

@Module({ controllers: [EventsController] })
class AppModule {}

async function eventually(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!predicate()) throw new Error(`gave up waiting for ${what}`);
}

it('a NestJS @Sse() controller streams bus.sse.stream(), replaying after Last-Event-ID', async () => {
  bus = await EventBus.open({ storeUrl: 'memory:', logger: () => undefined });
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/events`.replace('[::1]', '127.0.0.1');
  const before = await bus.publish({ type: 'order.placed', payload: 'before' });

  const received: Array<{ id: string; payload: unknown }> = [];
  const source = new EventSource(url, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, 'last-event-id': '0' } }),
  });
  source.addEventListener('order.placed', (m) => received.push({ id: m.lastEventId, payload: JSON.parse(m.data).payload }));
  await eventually(() => received.length === 1, 'the replayed event');
  await bus.publish({ type: 'user.created', payload: 'ignored' });
  const live = await bus.publish({ type: 'order.placed', payload: 'live' });
  await eventually(() => received.length === 2, 'the live event');
  expect(received).toEqual([
    { id: String(before.position), payload: 'before' },
    { id: String(live.position), payload: 'live' },
  ]);
  source.close();
  await eventually(() => bus.metrics().sseConnections === 0, 'the stream to end with the request');
  await app.close();
  await bus.close();
});
