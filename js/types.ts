/** The seed application's event types. Add your own through `EventMap`. */
export const EventType = {
  PROJECT_CREATED: 'project.created',
  PROJECT_UPDATED: 'project.updated',
  PROJECT_DELETED: 'project.deleted',
  PROJECT_STATUS_CHANGED: 'project.status_changed',
  INTEGRATION_CREATED: 'integration.created',
  INTEGRATION_UPDATED: 'integration.updated',
  INTEGRATION_DELETED: 'integration.deleted',
  INTEGRATION_STATUS_CHANGED: 'integration.status_changed',
  USER_CREATED: 'user.created',
  USER_UPDATED: 'user.updated',
  USER_DELETED: 'user.deleted',
  MENU_TYPE_CREATED: 'menu.type_created',
  MENU_ITEM_UPDATED: 'menu.item_updated',
  MENU_ITEM_DELETED: 'menu.item_deleted',
  PLUGIN_INSTALLED: 'plugin.installed',
  PLUGIN_UPDATED: 'plugin.updated',
  PLUGIN_UNINSTALLED: 'plugin.uninstalled',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/**
 * Payload types by event type. Empty by default; extend it by declaration merging and `publish`,
 * `subscribe` handlers and `getEvents` results become typed:
 *
 * ```ts
 * declare module '@situs/event-bus' {
 *   interface EventMap { 'invoice.paid': { invoiceId: string; amount: number } }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface EventMap {}

/** Event types declared in `EventMap`. */
export type KnownEventType = keyof EventMap & string;

/** The payload of `K`: declared in `EventMap`, else `unknown`. */
export type PayloadOf<K extends string> = K extends KnownEventType ? EventMap[K] : unknown;

/** What `publish` takes. `id` (a UUID) is generated when omitted. */
export interface PublishInput<K extends string = string> {
  id?: string;
  type: K;
  payload: PayloadOf<K>;
  projectId?: string;
  tenantId?: string;
  userId?: string;
  metadata?: Record<string, unknown>;
}

interface EventFields<K extends string> {
  /** UUID (v7 unless given at publish). */
  id: string;
  type: K;
  payload: PayloadOf<K>;
  timestamp: Date;
  projectId?: string;
  tenantId?: string;
  userId?: string;
  metadata?: Record<string, unknown>;
}

/** A stored event. A union over `K`, so checking `type` narrows `payload`. */
export type BusEvent<K extends string = string> = K extends string
  ? EventFields<K> & {
      /** Global position in the log (increasing in commit order). */
      position: number;
    }
  : never;

/**
 * What `publish` resolves with. When the bus is disabled (`enabled: false`) the event is validated
 * but not stored: `stored` is false and `position` null.
 */
export type PublishedEvent<K extends string = string> = K extends string
  ? (EventFields<K> & { position: number; stored: true }) | (EventFields<K> & { position: null; stored: false })
  : never;

type Segments<S extends string> = S extends `${infer Head}.${infer Tail}` ? [Head, ...Segments<Tail>] : [S];

type SegmentsMatch<P extends string[], T extends string[]> = P extends [
  infer PH extends string,
  ...infer PT extends string[],
]
  ? PH extends '**' | '#'
    ? true
    : T extends [infer TH extends string, ...infer TT extends string[]]
      ? PH extends '*' | TH
        ? SegmentsMatch<PT, TT>
        : false
      : false
  : T extends []
    ? true
    : false;

/** The declared event types a pattern (`*` one segment, `**`/`#` the rest) matches. */
export type MatchingTypes<P extends string> = {
  [K in KnownEventType]: SegmentsMatch<Segments<P>, Segments<K>> extends true ? K : never;
}[KnownEventType];

/** The event a handler for pattern `P` receives: typed when `P` matches declared types. */
export type EventFor<P extends string> = string extends P
  ? BusEvent
  : [MatchingTypes<P>] extends [never]
    ? BusEvent<P>
    : BusEvent<MatchingTypes<P>>;

export type EventHandler<P extends string = string> = (event: EventFor<P>) => void | Promise<void>;

export interface SubscribeOptions {
  /** Only events of this project. */
  projectId?: string;
  /** Only events of this tenant (a tenant-scoped handle always filters by its own). */
  tenantId?: string;
  /**
   * Where delivery starts: `'now'` (default), `'beginning'` of the stored log, or after a
   * position (exclusive). Stored events are replayed, then live ones follow with no gap and no
   * duplicate.
   */
  from?: 'now' | 'beginning' | number;
  /**
   * Durable consumer group: members with the same group name, in every instance sharing the
   * store, split its events (each handled by one member, in order per partition, at least once).
   * The group's checkpoint lives in the database; `from` applies only when the group is created.
   */
  group?: string;
  /** Handler calls per event, the first included, before it goes to the dead letters (default 5). */
  maxAttempts?: number;
  /** Delay between attempts: `initialMs × factor^n`, capped at `maxMs`, ±20% jitter (100 ms, 30 s, 2). */
  backoff?: { initialMs?: number; maxMs?: number; factor?: number };
  /** Events with the same value of this field are handled in order (default `'projectId'`). */
  partitionBy?: 'projectId' | 'tenantId' | 'userId' | 'type';
  /** Partitions of a new group (default 16): the most members that can work at once. */
  partitions?: number;
  /** How long a member holds its partitions without renewing (default 10000 ms); a member that dies is replaced after it. */
  leaseMs?: number;
}

/** An event a consumer group gave up on. */
export interface DeadLetter<E = BusEvent> {
  id: number;
  group: string;
  position: number;
  event: E;
  /** Handler calls made so far, over every round. */
  attempts: number;
  /** The last failure's message. */
  error: string;
  status: 'dead' | 'retrying' | 'resolved';
  createdAt: Date;
  updatedAt: Date;
}

export interface DeadLetterQuery {
  group?: string;
  status?: DeadLetter['status'];
  /** At most 1000 (default 100). */
  limit?: number;
}

export interface Subscription {
  unsubscribe(): void;
  readonly active: boolean;
}

/** Middleware: return the (possibly modified) event, or throw to reject the publish (REJECTED). */
export type Middleware = (
  event: PublishedEvent,
) => PublishInput | PublishedEvent | void | Promise<PublishInput | PublishedEvent | void>;

export interface EventQuery<P extends string = string> {
  /** Types or patterns. */
  types?: P[];
  projectId?: string;
  tenantId?: string;
  userId?: string;
  /** Events after this position (exclusive). */
  afterPosition?: number;
  /** Events at or after this time. */
  since?: Date | string;
  /** Events before this time. */
  until?: Date | string;
  /** Page size, 1 to 1000 (default 100). */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  order?: 'asc' | 'desc';
  /** Also return archived events. */
  includeArchived?: boolean;
}

export interface EventPage<E = BusEvent> {
  events: E[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface LogRecord {
  level: LogLevel;
  target: string;
  message: string;
  fields: Record<string, unknown>;
}

export interface EventBusOptions {
  /**
   * `postgres://…` (production), `sqlite://path` or `memory:` (tests). Default: EVENT_STORE_URL,
   * else `sqlite://./event-bus.db`. A PostgreSQL schema can be chosen with
   * `?options[search_path]=name`.
   */
  storeUrl?: string;
  store?: {
    /** Connections in the pool (default 10). */
    poolSize?: number;
    /** How long a publish or query waits for a connection before STORE_UNAVAILABLE (default 5000). */
    acquireTimeoutMs?: number;
  };
  /** Background archiving: durations in milliseconds or text such as '30d', '12h'. */
  retention?: {
    /** Archive events older than this. */
    archiveAfter?: number | string;
    /** Delete archived events this long after they were archived. */
    deleteArchivedAfter?: number | string;
    /** How often the retention pass runs (default 60000). */
    intervalMs?: number;
  };
  /** When false, publish validates but stores and delivers nothing (EVENT_BUS_ENABLED). */
  enabled?: boolean;
  /** When `bus.health()` reports the bus unhealthy. */
  health?: {
    /** The store must answer within this (default 1000). */
    storeTimeoutMs?: number;
    /** The LISTEN connection may be down this long before it counts (default 30000). */
    listenerDownMs?: number;
    /** Webhook deliveries waiting (pending + retrying) above this (default 10000). */
    maxWebhookBacklog?: number;
    /** A consumer group this many positions behind the head (default 100000)… */
    maxGroupLagEvents?: number;
    /** …or whose oldest unhandled event is this old (default 600000). */
    maxGroupLagMs?: number;
  };
  metrics?: {
    /** Histograms and labelled counts on the publish and delivery paths (default true; totals are always kept). */
    enabled?: boolean;
    /** How often the store's figures (webhook outbox, group lag) are read (default 5000). */
    refreshIntervalMs?: number;
    /** Serve Prometheus text over HTTP from this process (`bus.metricsUrl` once bound). */
    listen?: { host?: string; port?: number; path?: string };
  };
  /** Span export. Needs an addon built with the `otlp` cargo feature (`npm run build:native:otlp`): the default build refuses it with INVALID_CONFIG. */
  tracing?: {
    /** Export the bus's messaging spans over OTLP/HTTP (protobuf); one exporter per process, the first bus's settings win. */
    otlp?: {
      /** The collector's base URL, e.g. `http://localhost:4318` (`/v1/traces` is appended unless given). */
      endpoint: string;
      /** The `service.name` resource attribute (default `situs-event-bus`). */
      serviceName?: string;
    };
  };
  webhook?: {
    /** Attempts after the first (WEBHOOK_RETRY_ATTEMPTS, default 3). */
    retryAttempts?: number;
    /** Per request, connect to end of body (WEBHOOK_TIMEOUT, default 5000). */
    timeoutMs?: number;
    /** Requests in flight across all endpoints (default 64). */
    concurrency?: number;
    /** Requests in flight to one endpoint (default 8), so a slow one cannot starve the others. */
    perEndpointConcurrency?: number;
    /** Allow loopback, private, link-local… addresses (default false: refused after DNS resolution). */
    allowPrivateNetworks?: boolean;
    /** Allow http:// endpoint URLs (default false: https only). */
    allowHttp?: boolean;
    /** Delay before retry n: initialMs × factor^(n-1), capped at maxMs, ±20% jitter (5000, 3600000, 6). */
    backoff?: { initialMs?: number; maxMs?: number; factor?: number };
    /** Dead deliveries in a row that disable an endpoint (default 50). */
    disableAfterFailures?: number;
    /** How often idle workers look for due deliveries (default 1000). */
    pollIntervalMs?: number;
    /** Whether this instance sends webhooks (default true); publish-only instances may leave it to others. */
    workers?: boolean;
  };
  sse?: {
    /** A comment every this many ms on idle streams (SSE_HEARTBEAT_INTERVAL, default 30000). */
    heartbeatIntervalMs?: number;
    /** Recent events kept in memory so reconnects replay without the store (default 10000). */
    replayBufferSize?: number;
    /** Events queued per connection; a client this far behind is disconnected (default 1024). */
    clientBufferSize?: number;
    /** The `retry:` hint sent to clients (default 3000). */
    retryMs?: number;
  };
  batch?: {
    /** Most events per group commit (default 1000). */
    maxSize?: number;
    /** How long a batch may wait for more publishes (default 0: take what is queued). */
    maxDelayMs?: number;
  };
  validation?: {
    /** Largest payload, in bytes of its JSON (default 1 MiB). */
    maxPayloadBytes?: number;
    /** JSON Schema per event type, checked on publish. */
    schemas?: Record<string, object>;
  };
  security?: {
    /** Reject events without tenantId (FORBIDDEN). */
    requireTenant?: boolean;
  };
  delivery?: {
    /**
     * How often the log is read for events committed by other instances when no doorbell rang
     * (PostgreSQL rings one per commit; SQLite relies on this). Default 500.
     */
    pollIntervalMs?: number;
  };
  /** Receives the core's log records (default: warnings and errors to the console). */
  logger?: (record: LogRecord) => void;
  /** Most verbose level sent to `logger` (default 'info'). */
  logLevel?: LogLevel;
}

export interface EventBusMetrics {
  published: number;
  duplicates: number;
  rejected: number;
  delivered: number;
  handlerErrors: number;
  /** Group commits performed. */
  batches: number;
  /** Crossings into subscribers' handlers (each carries one or more events). */
  deliveryBatches: number;
  /** Consumer-group handler calls that repeated a failed one. */
  groupRetries: number;
  /** Events consumer groups moved to their dead letters. */
  deadLettered: number;
  /** Webhook deliveries answered 2xx. */
  webhooksDelivered: number;
  /** Webhook attempts that failed (each retry counts). */
  webhookFailures: number;
  /** Webhook deliveries given up on. */
  webhooksDead: number;
  /** SSE streams open now (servers and `sse.stream()`). */
  sseConnections: number;
  /** SSE streams closed because their client fell too far behind. */
  sseDropped: number;
  /** SSE streams that began with `event: reset`. */
  sseResets: number;
  subscribers: number;
  /** Publishes that failed for any reason (by code in `metricsText()`). */
  publishErrors: number;
  /** Admitted → answered, in seconds (histogram in `metricsText()`). */
  publishSeconds: MetricTotals;
  /** Per handled event, in seconds. */
  handlerSeconds: MetricTotals;
  /** Events per commit (`count` = commits). */
  commitEvents: MetricTotals;
  /** Per commit, in seconds. */
  commitSeconds: MetricTotals;
  /** Successful webhook attempts / attempts since the bus opened; null before the first. */
  webhookSuccessRate: number | null;
  /** Publish requests waiting for the writer. */
  batcherQueue: number;
  /** Events routed to live subscribers and not yet handled. */
  subscriberQueue: number;
  /** The webhook outbox, as of the latest refresh (`metrics.refreshIntervalMs`). */
  webhookPending: number;
  webhookRetrying: number;
  webhookDeadDeliveries: number;
  /** Consumer groups' lag, as of the latest refresh. */
  groups: Array<{ group: string; events: number; seconds: number }>;
  /** Store connections in use and idle (null for the memory store). */
  poolInUse: number | null;
  poolIdle: number | null;
  /** Acquires that found no idle connection in a full pool (they waited); null for memory. */
  poolWaits: number | null;
  processRssBytes: number;
  /** Bytes of events queued for subscribers. */
  bufferedBytes: number;
}

/** One check of `bus.health()`: `reason` says why it is not ok (or notes an ok one). */
export interface HealthCheck {
  ok: boolean;
  reason?: string;
}

/** `bus.health()`: healthy when every check is ok; checked afresh on each call. */
export interface BusHealth {
  healthy: boolean;
  checks: {
    /** The store answers a read within `health.storeTimeoutMs`. */
    store: HealthCheck;
    /** The LISTEN connection (PostgreSQL) is up, or down for less than `health.listenerDownMs`. */
    listener: HealthCheck;
    /** Webhook deliveries waiting are at most `health.maxWebhookBacklog`. */
    webhookWorkers: HealthCheck;
    /** Every consumer group is within `health.maxGroupLagEvents` and `health.maxGroupLagMs`. */
    consumerGroups: HealthCheck;
  };
}

/** Count and sum of a histogram's observations. */
export interface MetricTotals {
  count: number;
  sum: number;
}

/** A registered webhook endpoint (its secret is shown only by `register` and on rotation). */
export interface WebhookEndpoint {
  id: string;
  url: string;
  events: string[];
  tenantId: string | null;
  projectId: string | null;
  description: string | null;
  enabled: boolean;
  disabledReason: string | null;
  /** Dead deliveries in a row. */
  consecutiveFailures: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface RegisterWebhook {
  /** https (http only with `webhook.allowHttp`); refused when it resolves to a private address. */
  url: string;
  /** Event type patterns (`*` one segment, `**` the rest). */
  events: string[];
  /** Only this tenant's events. */
  tenantId?: string;
  /** Only this project's events. */
  projectId?: string;
  /** `whsec_` + base64 of 24–64 bytes; generated (32 bytes) when omitted. */
  secret?: string;
  description?: string;
}

export interface UpdateWebhook {
  url?: string;
  events?: string[];
  /** Re-enabling resets the failure count. */
  enabled?: boolean;
  description?: string | null;
  /** New secret; the old one keeps signing too for 24 hours (two `v1,` signatures). */
  rotateSecret?: boolean;
}

export interface WebhookAttempt {
  attempt: number;
  at: Date;
  statusCode: number | null;
  error: string | null;
  latencyMs: number;
  /** The first 1024 bytes of the response. */
  responseBody: string | null;
}

export interface WebhookDelivery {
  id: number;
  endpointId: string;
  /** The event's position. */
  position: number;
  /** The event's id (null only once the event has been purged from the archive). */
  eventId: string | null;
  /** The event's type (null only once the event has been purged from the archive). */
  eventType: string | null;
  /**
   * The `webhook-id` header the receiver gets (`msg_…`, the same on every attempt and replay);
   * null only once the event has been purged from the archive.
   */
  webhookId: string | null;
  status: 'pending' | 'retrying' | 'delivered' | 'dead';
  attempts: number;
  nextAttemptAt: Date | null;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
  attemptLog: WebhookAttempt[];
}

export interface WebhookDeliveryQuery {
  endpointId?: string;
  status?: WebhookDelivery['status'];
  /** Only the deliveries of this event (its id, a UUID). */
  eventId?: string;
  /** At most 1000 (default 100). */
  limit?: number;
}
