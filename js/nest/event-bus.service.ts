import { Inject, Injectable } from '@nestjs/common';
import { messageOf } from '../errors';
import type { EventBus, TenantEventBus } from '../event-bus';
import type {
  BusEvent,
  BusHealth,
  DeadLetter,
  DeadLetterQuery,
  EventBusMetrics,
  EventFor,
  EventHandler,
  EventPage,
  EventQuery,
  PublishedEvent,
  PublishInput,
  SubscribeOptions,
  Subscription,
} from '../types';
import { OPENED_BUS, type OpenedBus } from './opened-bus';

/** What `EventBusService.health()` reports. */
export interface EventBusServiceHealth {
  healthy: boolean;
  /** How long the checks took, when they answered. */
  latencyMs?: number;
  /** Why the bus is not healthy: the failing checks' reasons. */
  reason?: string;
  /** Each check of `bus.health()` (absent when it did not answer within `timeoutMs`). */
  checks?: BusHealth['checks'];
}

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
  getEvents<P extends string = string>(filter?: EventQuery<P>): Promise<EventPage<EventFor<P>>> {
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

  /**
   * `bus.health()` (the store, the LISTEN connection, the webhook backlog, consumer-group lag),
   * given `timeoutMs` (default: the bus's `health.storeTimeoutMs` plus a second) to answer.
   * Healthy again as soon as the cause is gone; nothing is reopened.
   */
  async health(options: { timeoutMs?: number } = {}): Promise<EventBusServiceHealth> {
    const timeoutMs = options.timeoutMs ?? 2000;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const report = await Promise.race([
        this.bus.health(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from the store within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      const latencyMs = Date.now() - started;
      if (report.healthy) return { healthy: true, latencyMs, checks: report.checks };
      const reason = Object.entries(report.checks)
        .filter(([, check]) => !check.ok)
        .map(([name, check]) => `${name}: ${check.reason ?? 'not ok'}`)
        .join('; ');
      return { healthy: false, latencyMs, reason, checks: report.checks };
    } catch (err) {
      return { healthy: false, reason: messageOf(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counters of the bus since it opened. */
  metrics(): EventBusMetrics {
    return this.bus.metrics();
  }

  /** The metrics as Prometheus text (for a `/metrics` controller). */
  metricsText(): string {
    return this.bus.metricsText();
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
