import { EventBusError, messageOf, native } from './errors';
import { hold, release } from './keep-alive';
import type { NativeBus } from './native';
import { fromWire, toJson } from './serialize';
import type { BusEvent } from './types';

/** The request an `authorize` hook sees. */
export interface SseAuthRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  remoteAddress: string;
}

/** What a connection may see; enforced in Rust on every event, replayed ones included. */
export interface SseGrant {
  /** Only this tenant's events (omit for every tenant). */
  tenantId?: string;
  projectIds?: string[];
  /** Patterns (`*` one segment, `**` the rest). */
  types?: string[];
}

export interface SseListenOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default `/events`. */
  path?: string;
  /** Return a grant, or null to answer 401. Without it every connection may see every event. */
  authorize?: (request: SseAuthRequest) => SseGrant | null | Promise<SseGrant | null>;
  /** `true`: any origin (echoed, with credentials); or the allowed origin(s). */
  cors?: boolean | string | string[];
}

export interface SseServer {
  readonly url: string;
  /** Ends every stream of this server and stops listening. */
  close(): Promise<void>;
  /** Like `net.Server#unref`: a listening server no longer keeps Node alive by itself. */
  unref(): this;
  /** Undoes `unref()`: the server keeps Node alive until it is closed (the default). */
  ref(): this;
}

export interface SseStreamOptions {
  types?: string[];
  projectId?: string;
  tenantId?: string;
  /** Replays what came after this position first (EventSource's Last-Event-ID). */
  lastEventId?: string | number;
}

/** One message of `stream()`, shaped like NestJS's `MessageEvent` (`id` = the event's position). */
export type SseMessage =
  | { id: string; type: string; data: BusEvent }
  | { type: 'reset'; id?: undefined; data?: undefined };

/**
 * Bus events as SSE messages in an AsyncIterable, for a NestJS `@Sse()` controller. A tenant
 * handle's (`bus.forTenant(id).sse`) streams only that tenant's events.
 */
export class SseStreams {
  /** @internal */
  constructor(
    /** @internal */ protected readonly nativeBus: NativeBus,
    private readonly tenantId: string | null,
  ) {}

  /** Ends (and unsubscribes) when the loop stops (`break`, `return`) or the bus closes. */
  stream(options: SseStreamOptions = {}): AsyncIterableIterator<SseMessage> {
    const nativeBus = this.nativeBus;
    const tenantId = this.tenantId;
    let opened: ReturnType<NativeBus['sseStream']> | undefined;
    const open = () => (opened ??= native(() => nativeBus.sseStream(toJson(options ?? {}, 'options'), tenantId)));
    let buffered: SseMessage[] = [];
    let done = false;
    const finish = async (): Promise<IteratorResult<SseMessage>> => {
      done = true;
      buffered = [];
      if (opened) await (await opened.catch(() => undefined))?.close();
      return { done: true, value: undefined };
    };
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next(): Promise<IteratorResult<SseMessage>> {
        if (done) return { done: true, value: undefined };
        if (buffered.length === 0) {
          const stream = await open();
          const json = await stream.next();
          if (json === null) return finish();
          buffered = (JSON.parse(json) as Array<{ id?: string; type: string; data?: { timestamp: string } }>).map((m) =>
            m.data ? ({ id: m.id!, type: m.type, data: fromWire<BusEvent>(m.data) } as SseMessage) : ({ type: 'reset' } as SseMessage),
          );
        }
        return { done: false, value: buffered.shift()! };
      },
      return: finish,
      async throw(err?: unknown): Promise<IteratorResult<SseMessage>> {
        await finish();
        throw err instanceof Error ? err : new Error(messageOf(err));
      },
    };
  }
}

/**
 * Server-Sent Events served from Rust: `listen` starts an HTTP server whose connections live on
 * the Rust runtime (no cost to the Node event loop); `stream` gives the same messages as an
 * AsyncIterable for a NestJS `@Sse()` controller (`from(bus.sse.stream(…))`).
 */
export class Sse extends SseStreams {
  /** Servers still holding Node open, released when the bus closes (which closes them). */
  private readonly holding = new Set<() => void>();

  /** @internal */
  constructor(nativeBus: NativeBus) {
    super(nativeBus, null);
  }

  /** @internal The bus closed, and its servers with it. */
  released(): void {
    for (const unhold of [...this.holding]) unhold();
  }

  listen(options: SseListenOptions = {}): Promise<SseServer> {
    return native(async () => {
      const { authorize, ...rest } = options ?? {};
      if (authorize !== undefined && typeof authorize !== 'function') {
        throw new EventBusError('INVALID_EVENT', 'authorize must be a function');
      }
      const hook = authorize
        ? async (json: string): Promise<string | null> => {
            const grant = await authorize(JSON.parse(json) as SseAuthRequest);
            return grant ? JSON.stringify(grant) : null;
          }
        : undefined;
      const server = await this.nativeBus.sseListen(toJson(rest, 'options'), hook);
      // A listening server keeps Node alive until closed, as a net.Server does.
      const unhold = (): void => {
        if (this.holding.delete(unhold)) release();
      };
      const holdOpen = (): void => {
        if (!this.holding.has(unhold) && !this.nativeBus.closed) {
          this.holding.add(unhold);
          hold();
        }
      };
      holdOpen();
      const handle: SseServer = {
        url: server.url,
        close: async () => {
          try {
            await server.close();
          } finally {
            unhold();
          }
        },
        unref() {
          unhold();
          return this;
        },
        ref() {
          holdOpen();
          return this;
        },
      };
      return handle;
    });
  }
}
