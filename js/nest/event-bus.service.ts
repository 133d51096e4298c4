import { Inject, Injectable } from '@nestjs/common';
import type { EventBus, EventsOf, TenantEventBus } from '../event-bus';
import type {
  BusEvent,
  DeadLetter,
  DeadLetterQuery,
  EventBusMetrics,
  EventHandler,
  EventPage,
  EventQuery,
  PublishedEvent,
  PublishInput,
  SubscribeOptions,
  Subscription,
} from '../types';
import { OPENED_BUS, type OpenedBus } from './opened-bus';

/**
 * The bus as an injectable: the calls a service needs, typed by `EventMap` as on `EventBus`.
 * `bus` gives the rest (middleware, archive, …).
 */
@Injectable()
export class EventBusService {
  /** The underlying bus, opened by `EventBusModule`. */
  readonly bus: EventBus;

  constructor(@Inject(OPENED_BUS) opened: OpenedBus) {
    this.bus = opened.bus;
  }

  /** Validates, stores and delivers an event; resolves once it is committed. */
  publish<K extends string>(event: PublishInput<K>): Promise<PublishedEvent<K>> {
    return this.bus.publish(event);
  }

  /** Publishes atomically: every event is stored, or none. */
  publishMany<K extends string>(events: PublishInput<K>[]): Promise<PublishedEvent<K>[]> {
    return this.bus.publishMany(events);
  }

  /** Calls `handler` for matching events in position order (see `EventBus.subscribe`). */
  subscribe<P extends string>(pattern: P | readonly P[], handler: EventHandler<P>, options?: SubscribeOptions): Subscription {
    return this.bus.subscribe(pattern, handler, options);
  }

  /** Reads stored events; page with `nextCursor`. */
  getEvents<P extends string = string>(filter?: EventQuery<P>): Promise<EventPage<EventsOf<P>>> {
    return this.bus.getEvents(filter);
  }

  /** One project's stored events. */
  getEventsByProject(projectId: string, options?: Omit<EventQuery, 'projectId'>): Promise<EventPage<BusEvent>> {
    return this.bus.getEventsByProject(projectId, options);
  }

  /** A handle acting on behalf of one tenant. */
  forTenant(tenantId: string): TenantEventBus {
    return this.bus.forTenant(tenantId);
  }

  /** Webhook endpoints and their deliveries. */
  get webhooks(): EventBus['webhooks'] {
    return this.bus.webhooks;
  }

  /** The Rust SSE server and `@Sse()` streams. */
  get sse(): EventBus['sse'] {
    return this.bus.sse;
  }

  metrics(): EventBusMetrics {
    return this.bus.metrics();
  }

  /** Events consumer groups gave up on, newest first. */
  deadLetters(query?: DeadLetterQuery): Promise<DeadLetter[]> {
    return this.bus.deadLetters(query);
  }

  /** Sends a dead letter back to its group. */
  retryDeadLetter(id: number): Promise<void> {
    return this.bus.retryDeadLetter(id);
  }
}
