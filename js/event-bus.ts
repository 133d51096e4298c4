import { holdWhileDelivering } from './delivery-hold';
import { EventBusError, fromNative, messageOf, native, nativeSync } from './errors';
import { binding, NativeBus } from './native';
import { drainPublishes, flushPublishes, publishQueue } from './publish-queue';
import { fromWire, isoOf, publishFields, toJson, withDates } from './serialize';
import { withTraceContext } from './trace-context';
import { Sse, SseStreams } from './sse';
import { Webhooks } from './webhooks';
import type {
  BusEvent,
  BusHealth,
  DeadLetter,
  DeadLetterQuery,
  EventBusMetrics,
  EventBusOptions,
  EventFor,
  EventHandler,
  EventPage,
  EventQuery,
  LogRecord,
  Middleware,
  PublishedEvent,
  PublishInput,
  SubscribeOptions,
  Subscription,
} from './types';

const ENV_VARS = [
  'EVENT_BUS_ENABLED',
  'EVENT_STORE_URL',
  'WEBHOOK_RETRY_ATTEMPTS',
  'WEBHOOK_TIMEOUT',
  'SSE_HEARTBEAT_INTERVAL',
] as const;

/** Read here and passed explicitly: native code does not see `process.env` changes made in JS. */
function environment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ENV_VARS) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function consoleLogger(record: LogRecord): void {
  if (record.level === 'error') console.error(`[event-bus] ${record.message}`, record.fields);
  else if (record.level === 'warn') console.warn(`[event-bus] ${record.message}`, record.fields);
}

const ignore = (): void => undefined;

/** A parsed wire event as `publish` resolves it: `stored` tells whether it reached the store. */
function asPublished<T>(wire: { timestamp: string; position: number | null }): T {
  const event = fromWire<PublishedEvent>(wire);
  (event as { stored: boolean }).stored = event.position !== null;
  return event as T;
}

/** Publishing, subscribing and reading; shared by the bus and its tenant-scoped handles. */
export class EventBusHandle {
  /** @internal */
  protected constructor(
    /** @internal */ protected readonly nativeBus: NativeBus,
    /** The tenant this handle is scoped to, if any. */
    readonly tenantId: string | null,
  ) {}

  /** Validates, stores and delivers an event; resolves once it is committed. */
  publish<K extends string>(event: PublishInput<K>): Promise<PublishedEvent<K>> {
    return native(async () => {
      const wire = await publishQueue(this.nativeBus).publish(toJson(withTraceContext(event), ''), this.tenantId);
      return asPublished<PublishedEvent<K>>(wire as { timestamp: string; position: number | null });
    });
  }

  /**
   * @internal Fire-and-forget (`RealtimeEventsService.publish`): `onFailure` gets the error if the
   * event is refused or not stored. Nothing is returned, so the stored event is not sent back and
   * no promise is made.
   */
  publishAndForget(event: PublishInput, onFailure: (err: unknown) => void): void {
    let json: string;
    try {
      json = toJson(withTraceContext(event), '');
    } catch (err) {
      onFailure(fromNative(err));
      return;
    }
    publishQueue(this.nativeBus).publishQuietly(json, this.tenantId, { resolve: ignore, reject: onFailure });
  }

  /** Publishes atomically: every event is stored, or none and the error names the index. */
  publishMany<K extends string>(events: PublishInput<K>[]): Promise<PublishedEvent<K>[]> {
    return native(async () => {
      if (!Array.isArray(events)) throw new EventBusError('INVALID_EVENT', 'events must be an array');
      const json = await this.nativeBus.publishMany(toJson(events.map(withTraceContext), 'events'), this.tenantId);
      const list = JSON.parse(json) as Array<{ timestamp: string; position: number | null }>;
      return list.map((wire) => asPublished<PublishedEvent<K>>(wire));
    });
  }

  /**
   * Calls `handler` for each matching event committed from now on, in position order. `*` matches
   * one segment, `**` (or `#`) the rest. Async handlers are awaited one at a time per subscriber;
   * a handler that throws is logged and counted, and delivery goes on.
   */
  subscribe<P extends string>(
    pattern: P | readonly P[],
    handler: EventHandler<P>,
    options: SubscribeOptions = {},
  ): Subscription {
    const patterns: readonly unknown[] = Array.isArray(pattern) ? pattern : [pattern];
    patterns.forEach((p, i) => {
      if (typeof p !== 'string') {
        const field = patterns.length === 1 ? 'pattern' : `pattern[${i}]`;
        throw new EventBusError('INVALID_EVENT', `${field} must be a string`);
      }
    });
    if (typeof handler !== 'function') {
      throw new EventBusError('INVALID_EVENT', 'handler must be a function');
    }
    let active = true;
    // A group retries a failed event before the next of its partition, so its batches stop at
    // the first failure (the core delivers the rest again).
    const stopAtFailure = typeof options?.group === 'string';
    // Each handler call's time goes back with the batch's result, for the handler-duration
    // histogram (off with `metrics.enabled: false`).
    const timed = this.nativeBus.metricsEnabled;
    const deliver = async (json: string): Promise<string> => {
      const batch = JSON.parse(json) as Array<{ position: number; timestamp: string }>;
      let failures: Array<{ position: number; message: string }> | undefined;
      const seconds: number[] | undefined = timed ? [] : undefined;
      for (const wire of batch) {
        // Unsubscribing stops delivery at once, even in the middle of a batch.
        if (!active) break;
        const started = timed ? performance.now() : 0;
        try {
          const result = handler(fromWire<EventFor<P>>(wire));
          if (result && typeof (result as Promise<void>).then === 'function') await result;
        } catch (err) {
          (failures ??= []).push({ position: wire.position, message: messageOf(err) });
          if (stopAtFailure) {
            seconds?.push((performance.now() - started) / 1000);
            break;
          }
        }
        seconds?.push((performance.now() - started) / 1000);
      }
      if (seconds) return JSON.stringify(failures ? { failures, seconds } : { seconds });
      return failures ? JSON.stringify(failures) : '';
    };
    const sub = nativeSync(() =>
      this.nativeBus.subscribe(patterns as string[], toJson(options ?? {}, 'options'), this.tenantId, deliver),
    );
    return {
      unsubscribe() {
        active = false;
        sub.unsubscribe();
      },
      get active() {
        return active;
      },
    };
  }

  /** Reads stored events, oldest first unless `order: 'desc'`; page with `nextCursor`. */
  getEvents<P extends string = string>(filter: EventQuery<P> = {}): Promise<EventPage<EventFor<P>>> {
    return native(async () => {
      const wireFilter = {
        ...filter,
        since: isoOf(filter.since),
        until: isoOf(filter.until),
      };
      const json = await this.nativeBus.getEvents(toJson(wireFilter, 'filter'), this.tenantId);
      const page = JSON.parse(json) as { events: Array<{ timestamp: string }>; nextCursor: string | null };
      return { events: page.events.map((e) => fromWire<EventFor<P>>(e)), nextCursor: page.nextCursor };
    });
  }

  getEventsByProject(
    projectId: string,
    options: Omit<EventQuery, 'projectId'> = {},
  ): Promise<EventPage<BusEvent>> {
    if (typeof projectId !== 'string') {
      return Promise.reject(new EventBusError('INVALID_EVENT', 'projectId must be a string'));
    }
    return this.getEvents({ ...options, projectId });
  }
}

/** A handle scoped to one tenant: stamps its tenant on publishes, refuses other tenants' events and
 *  only sees its own tenant in subscriptions and queries (enforced in the Rust core). */
export class TenantEventBus extends EventBusHandle {
  /** SSE streams of this tenant's events only (for `@Sse()` controllers). */
  readonly sse: SseStreams;

  private constructor(nativeBus: NativeBus, tenantId: string) {
    super(nativeBus, tenantId);
    this.sse = new SseStreams(nativeBus, tenantId);
  }

  /** @internal */
  static create(nativeBus: NativeBus, tenantId: string): TenantEventBus {
    return new TenantEventBus(nativeBus, tenantId);
  }
}

export class EventBus extends EventBusHandle {
  /** Webhook endpoints and their deliveries. */
  readonly webhooks: Webhooks;
  /** Server-Sent Events: a Rust HTTP server for browsers, and streams for NestJS `@Sse()`. */
  readonly sse: Sse;

  private readonly deliveries: { stop(): void };

  private constructor(nativeBus: NativeBus) {
    super(nativeBus, null);
    this.webhooks = new Webhooks(nativeBus);
    this.sse = new Sse(nativeBus);
    this.deliveries = holdWhileDelivering(nativeBus);
  }

  /** Opens a bus. Options win over the environment (EVENT_BUS_ENABLED, EVENT_STORE_URL, …). */
  static async open(options: EventBusOptions = {}): Promise<EventBus> {
    const { logger = consoleLogger, ...rest } = options ?? {};
    if (typeof logger !== 'function') {
      throw new EventBusError('INVALID_CONFIG', 'option logger must be a function');
    }
    const forward = (record: string): void => {
      try {
        logger(JSON.parse(record) as LogRecord);
      } catch {
        // A failing logger must not break the bus.
      }
    };
    const optionsJson = nativeSync(() => {
      try {
        return toJson(rest, 'options');
      } catch (err) {
        throw new EventBusError('INVALID_CONFIG', messageOf(err));
      }
    });
    const nativeBus = await native(() => binding.openBus(optionsJson, environment(), forward));
    return new EventBus(nativeBus);
  }

  /** A handle that acts on behalf of one tenant (see `TenantEventBus`). */
  forTenant(tenantId: string): TenantEventBus {
    if (typeof tenantId !== 'string') throw new EventBusError('INVALID_EVENT', 'tenantId must be a string');
    nativeSync(() => this.nativeBus.checkTenant(tenantId));
    return TenantEventBus.create(this.nativeBus, tenantId);
  }

  /** Adds a middleware after the built-in ones; returns a function that removes it. */
  use(middleware: Middleware): () => void {
    if (typeof middleware !== 'function') throw new EventBusError('INVALID_EVENT', 'middleware must be a function');
    const run = async (json: string): Promise<string | null> => {
      // Not stored yet: position null, stored false.
      const result = await middleware(asPublished<PublishedEvent>(JSON.parse(json)));
      // Returning nothing keeps the event as it is.
      if (result === undefined || result === null) return null;
      if (typeof result !== 'object') throw new Error(`middleware returned ${typeof result}, not an event`);
      return toJson(publishFields(result as unknown as Record<string, unknown>), '');
    };
    const id = nativeSync(() => this.nativeBus.useMiddleware(run));
    return () => {
      this.nativeBus.removeMiddleware(id);
    };
  }

  /**
   * Moves events older than `olderThan` to the archive, in bounded batches (safe to run
   * concurrently and to re-run). `getEvents({ includeArchived: true })` still finds them. With
   * `limit`, at most that many move (the oldest first): call again until `archived < limit` to
   * archive in steps and show progress.
   */
  archive(options: { olderThan: Date | string; limit?: number }): Promise<{ archived: number }> {
    return native(async () => {
      const olderThan = options?.olderThan;
      const iso = isoOf(olderThan);
      if (typeof iso !== 'string') throw new EventBusError('INVALID_EVENT', 'olderThan must be a Date or an ISO-8601 string');
      const limit = options?.limit;
      if (limit !== undefined && typeof limit !== 'number') throw new EventBusError('INVALID_EVENT', 'limit must be a number');
      return { archived: await this.nativeBus.archive(iso, limit ?? null) };
    });
  }

  /** Events consumer groups gave up on, newest first. */
  deadLetters(query: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    return native(async () => {
      const json = await this.nativeBus.deadLetters(toJson(query ?? {}, 'query'));
      const list = JSON.parse(json) as Array<DeadLetter<{ timestamp: string }> & { createdAt: string; updatedAt: string }>;
      return list.map((d) => ({ ...withDates<DeadLetter>(d, ['createdAt', 'updatedAt']), event: fromWire<BusEvent>(d.event) }));
    });
  }

  /**
   * Sends a dead letter back to its group: a member of the group (in any instance) handles it
   * again with the group's maxAttempts and backoff; its status becomes 'resolved' or 'dead'.
   */
  retryDeadLetter(id: number): Promise<void> {
    return native(() => this.nativeBus.retryDeadLetter(id));
  }

  metrics(): EventBusMetrics {
    return JSON.parse(nativeSync(() => this.nativeBus.metrics())) as EventBusMetrics;
  }

  /**
   * Whether the bus can do its work now: the store answers, the LISTEN connection is up, webhook
   * deliveries and consumer groups keep up (limits in `health`). Checked afresh on each call, so
   * it is healthy again as soon as the cause is gone.
   */
  health(): Promise<BusHealth> {
    return native(async () => JSON.parse(await this.nativeBus.health()) as BusHealth);
  }

  /**
   * Reads the store's figures in the metrics (webhook outbox, consumer-group lag) now; they are
   * otherwise refreshed every `metrics.refreshIntervalMs`.
   */
  refreshMetrics(): Promise<void> {
    return native(() => this.nativeBus.refreshMetrics());
  }

  /** The metrics as Prometheus text (format 0.0.4), every name prefixed `situs_event_bus_`. */
  metricsText(): string {
    return nativeSync(() => this.nativeBus.metricsText());
  }

  /** Where `metrics.listen` serves the metrics (`http://host:port/path`), or null. */
  get metricsUrl(): string | null {
    return this.nativeBus.metricsUrl ?? null;
  }

  get closed(): boolean {
    return this.nativeBus.closed;
  }

  /** Drains pending publishes and deliveries, then releases native resources. Idempotent. */
  close(): Promise<void> {
    return native(async () => {
      try {
        // Publishes of this tick are still in JS: hand them over, so close drains them.
        flushPublishes(this.nativeBus);
        await this.nativeBus.close();
        // Publishes the native side finished may still be on their way to their promises.
        await drainPublishes(this.nativeBus);
      } finally {
        this.deliveries.stop();
        this.sse.released();
      }
    });
  }
}

