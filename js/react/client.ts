// One Server-Sent Events connection to the bus's SSE server, shared by every subscriber. No React
// here: the provider wraps it. It runs in browsers (and in Node with an EventSource implementation).
import type { BusEvent } from '../types';
import { compilePattern } from './pattern';

/** The part of the WHATWG `EventSource` the client uses; the browser's and npm `eventsource` fit. */
export interface EventSourceLike {
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}

/** A constructor such as the browser's `EventSource`. */
export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/**
 * - `connecting`: the first connection is being opened;
 * - `open`: events flow;
 * - `reconnecting`: the connection dropped (or was refused) and is retried after a backoff;
 * - `closed`: not connected and not trying (the provider unmounted, or no EventSource here).
 */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectionInfo {
  state: ConnectionState;
  /** The SSE id (the event's global position) of the last event received; sent on reconnect. */
  lastEventId: string | null;
  /**
   * How many times the server said the history after `lastEventId` is no longer retained
   * (`event: reset`): events were missed, refetch what the page shows.
   */
  resets: number;
  /** Failed attempts since the connection was last open. */
  retries: number;
}

/** Only events of this project / tenant. */
export interface EventFilter {
  projectId?: string;
  tenantId?: string;
}

export interface BackoffOptions {
  /** Delay before the first retry (default 500 ms). */
  initialMs?: number;
  /** Longest delay (default 30000 ms). */
  maxMs?: number;
  /** Growth per failed attempt (default 2). */
  factor?: number;
}

export interface EventBusClientOptions {
  /** The SSE endpoint, e.g. `https://api.example.com/events` or `/events`. */
  url: string;
  /** Send cookies cross-origin (the server must allow credentials). */
  withCredentials?: boolean;
  /** Ask the server for these types or patterns only (default: everything it lets this client see). */
  types?: string[];
  /** Ask the server for this project's events only. */
  projectId?: string;
  /** Ask the server for this tenant's events only (its authorize hook may impose one anyway). */
  tenantId?: string;
  /** Start after this event id (a position) instead of live: events after it are replayed first. */
  lastEventId?: string | number;
  /** Reconnect delays (±20% jitter). */
  backoff?: BackoffOptions;
  /** The EventSource implementation (default: the global `EventSource`). */
  EventSource?: EventSourceConstructor;
  /** Called when the server sends `event: reset` (history after the last id is gone: refetch). */
  onReset?: () => void;
}

type Listener = (event: BusEvent) => void;

interface Subscription {
  matches(eventType: string): boolean;
  filter: EventFilter;
  listener: Listener;
}

/** Adds query parameters to a URL that may be relative, keeping any it already has. */
function withParams(url: string, params: Record<string, string | undefined>): string {
  const hashAt = url.indexOf('#');
  const base = hashAt < 0 ? url : url.slice(0, hashAt);
  const hash = hashAt < 0 ? '' : url.slice(hashAt);
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) query.set(name, value);
  const text = query.toString();
  if (text === '') return url;
  return `${base}${base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?'}${text}${hash}`;
}

function globalEventSource(): EventSourceConstructor | undefined {
  return (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
}

/**
 * The shared connection. `connect()` opens it, `close()` ends it (and any pending retry);
 * `subscribe` registers a pattern at any time, connected or not, and every event received is
 * dispatched to the subscriptions whose pattern and filter it matches.
 *
 * The server is asked for `format=message` so that every event arrives as an unnamed message
 * (`onmessage` sees them all); its type is in the data. When the connection fails the client
 * closes it and opens a new one after a backoff, with `lastEventId` in the query (an EventSource
 * cannot set headers), so the server replays what was missed.
 */
export class EventBusClient {
  private options: EventBusClientOptions;
  private readonly subscriptions = new Set<Subscription>();
  private readonly watchers = new Set<() => void>();
  private info: ConnectionInfo = { state: 'closed', lastEventId: null, resets: 0, retries: 0 };
  private source: EventSourceLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastPosition: number | null = null;
  private running = false;

  constructor(options: EventBusClientOptions) {
    this.options = options;
  }

  /** Replaces the options; they apply from the next `connect()` (the reset callback at once). */
  configure(options: EventBusClientOptions): void {
    this.options = options;
  }

  /** Opens the connection (a no-op when it is open or retrying). */
  connect(): void {
    if (this.running) return;
    this.running = true;
    const start = this.options.lastEventId;
    const position = start === undefined || start === '' ? NaN : Number(start);
    this.lastPosition = Number.isFinite(position) ? position : null;
    this.update({
      state: 'connecting',
      lastEventId: start === undefined || start === '' ? null : String(start),
      retries: 0,
    });
    this.open();
  }

  /** Closes the connection and cancels any pending retry. Subscriptions stay registered. */
  close(): void {
    this.running = false;
    this.clearTimer();
    this.dropSource();
    this.update({ state: 'closed' });
  }

  /** Calls `listener` with every event matching `pattern` and `filter`; returns the unsubscribe. */
  subscribe(pattern: string, filter: EventFilter, listener: Listener): () => void {
    const subscription: Subscription = { matches: compilePattern(pattern).matches, filter: { ...filter }, listener };
    this.subscriptions.add(subscription);
    return () => {
      this.subscriptions.delete(subscription);
    };
  }

  /** How many subscriptions (hooks) are registered now. */
  get subscriberCount(): number {
    return this.subscriptions.size;
  }

  /** The current connection info (a new object after every change, so it can be compared). */
  getConnection = (): ConnectionInfo => this.info;

  /** Calls `watcher` after every change of `getConnection()`; returns the unsubscribe. */
  watchConnection = (watcher: () => void): (() => void) => {
    this.watchers.add(watcher);
    return () => {
      this.watchers.delete(watcher);
    };
  };

  private update(change: Partial<ConnectionInfo>): void {
    const next = { ...this.info, ...change };
    if (
      next.state === this.info.state &&
      next.lastEventId === this.info.lastEventId &&
      next.resets === this.info.resets &&
      next.retries === this.info.retries
    ) {
      return;
    }
    this.info = next;
    for (const watcher of [...this.watchers]) watcher();
  }

  private open(): void {
    const Impl = this.options.EventSource ?? globalEventSource();
    if (!Impl) {
      this.running = false;
      this.update({ state: 'closed' });
      throw new Error(
        '@situs/event-bus/react: no EventSource here; pass one to <EventBusProvider EventSource={…}> (e.g. npm `eventsource` in Node)',
      );
    }
    const url = withParams(this.options.url, {
      format: 'message',
      types: this.options.types && this.options.types.length > 0 ? this.options.types.join(',') : undefined,
      projectId: this.options.projectId,
      tenantId: this.options.tenantId,
      lastEventId: this.info.lastEventId ?? undefined,
    });
    const source = new Impl(url, { withCredentials: this.options.withCredentials ?? false });
    this.source = source;
    // Events of a source that has since been replaced are ignored.
    const current = (): boolean => this.source === source;
    source.addEventListener('open', () => {
      if (current()) this.update({ state: 'open', retries: 0 });
    });
    source.addEventListener('message', (message: { data?: unknown; lastEventId?: unknown }) => {
      if (current()) this.receive(message);
    });
    source.addEventListener('reset', () => {
      if (!current()) return;
      this.update({ resets: this.info.resets + 1 });
      this.options.onReset?.();
    });
    source.addEventListener('error', () => {
      if (current()) this.retryLater();
    });
  }

  private receive(message: { data?: unknown; lastEventId?: unknown }): void {
    if (typeof message.data !== 'string') return;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(message.data) as Record<string, unknown>;
    } catch {
      return; // not an event of ours
    }
    if (!raw || typeof raw.type !== 'string') return;
    const position = typeof raw.position === 'number' ? raw.position : Number(message.lastEventId);
    // A replay that overlaps what was already received is not delivered twice.
    if (Number.isFinite(position) && this.lastPosition !== null && position <= this.lastPosition) return;
    if (Number.isFinite(position)) this.lastPosition = position;
    const id = typeof message.lastEventId === 'string' && message.lastEventId !== '' ? message.lastEventId : null;
    this.update({ lastEventId: id ?? (Number.isFinite(position) ? String(position) : this.info.lastEventId) });
    const event = { ...raw, timestamp: new Date(raw.timestamp as string) } as unknown as BusEvent;
    for (const subscription of [...this.subscriptions]) {
      if (!this.subscriptions.has(subscription)) continue; // removed by an earlier listener
      const { filter } = subscription;
      if (!subscription.matches(event.type)) continue;
      if (filter.projectId !== undefined && event.projectId !== filter.projectId) continue;
      if (filter.tenantId !== undefined && event.tenantId !== filter.tenantId) continue;
      try {
        subscription.listener(event);
      } catch (error) {
        console.error('@situs/event-bus/react: a listener threw', error);
      }
    }
  }

  /** The EventSource gave up or is retrying on its own: take over, with our backoff and last id. */
  private retryLater(): void {
    const source = this.source;
    this.dropSource();
    // Some implementations (npm `eventsource`) arm their own retry timer after dispatching
    // `error`, so after our close(); closing again once the dispatch is over clears it.
    void Promise.resolve().then(() => source?.close());
    if (!this.running || this.timer !== null) return;
    const { initialMs = 500, maxMs = 30_000, factor = 2 } = this.options.backoff ?? {};
    const base = Math.min(maxMs, initialMs * Math.pow(factor, this.info.retries));
    const delay = Math.max(0, Math.round(base * (0.8 + Math.random() * 0.4)));
    this.update({ state: 'reconnecting', retries: this.info.retries + 1 });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.running) this.open();
    }, delay);
  }

  private dropSource(): void {
    const source = this.source;
    this.source = null;
    source?.close();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
