import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { EventSource } from 'eventsource';
import { EventBus, EventBusOptions } from '@situs/event-bus';
import { postgresStore } from './stores';

jest.setTimeout(120_000);

async function eventually(predicate: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  for (let waited = 0; waited < limitMs; waited += 10) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

interface Parsed {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
  retry?: string;
}

/** A raw SSE client on node:http: every block as parsed, the response, and the request to abort. */
/** Established TCP sockets on the server's side of `url`'s port (Linux `ss`). */
function establishedServerSockets(url: string): number {
  const port = new URL(url).port;
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).length;
}

function rawClient(url: string, headers: Record<string, string> = {}) {
  const blocks: Parsed[] = [];
  /** When each block arrived (ms, performance.now(); blocks of one chunk share it), by index. */
  const arrivals: number[] = [];
  let buffer = '';
  let status = 0;
  let responseHeaders: http.IncomingHttpHeaders = {};
  let ended = false;
  let response: http.IncomingMessage | undefined;
  const req = http.get(url, { headers }, (res) => {
    response = res;
    status = res.statusCode ?? 0;
    responseHeaders = res.headers;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      const at = performance.now();
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const parsed: Parsed = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) parsed.comment = line.slice(1).trim();
          else {
            const i = line.indexOf(':');
            const field = line.slice(0, i) as keyof Parsed;
            const value = line.slice(i + 1).replace(/^ /, '');
            parsed[field] = parsed[field] !== undefined && field === 'data' ? `${parsed.data}\n${value}` : value;
          }
        }
        blocks.push(parsed);
        arrivals.push(at);
      }
    });
    res.on('end', () => (ended = true));
    res.on('error', () => (ended = true));
  });
  req.on('error', () => (ended = true));
  return {
    blocks,
    arrivals,
    events: () => blocks.filter((b) => b.data !== undefined && b.event !== 'reset'),
    get status() {
      return status;
    },
    get headers() {
      return responseHeaders;
    },
    get ended() {
      return ended;
    },
    pause: () => response?.pause(),
    abort: () => req.destroy(),
  };
}

async function open(options: EventBusOptions = {}): Promise<EventBus> {
  return EventBus.open({ storeUrl: 'memory:', logger: () => undefined, ...options });
}

describe('SSE server', () => {
  let bus: EventBus;
  afterEach(async () => {
    await bus?.close();
  });

  it('answers with the SSE headers, a comment and the retry hint at once, then events', async () => {
    bus = await open({ sse: { retryMs: 1500 } });
    const server = await bus.sse.listen({ port: 0, host: '127.0.0.1' });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/events$/);
    const c = rawClient(server.url);
    await eventually(() => c.blocks.length >= 2, 'the preamble');
    expect(c.status).toBe(200);
    expect(c.headers['content-type']).toBe('text/event-stream');
    expect(c.headers['cache-control']).toBe('no-cache');
    expect(c.headers['x-accel-buffering']).toBe('no');
    expect(c.blocks[0]).toEqual({ comment: 'connected' });
    expect(c.blocks[1]).toEqual({ retry: '1500' });
    // Where it stands (nothing published yet): an id without data, no event.
    await eventually(() => c.blocks.length >= 3, 'the starting id');
    expect(c.blocks[2]).toEqual({ id: '0' });
    const e = await bus.publish({ type: 'project.created', payload: { name: 'Apollo' }, projectId: 'p1' });
    await eventually(() => c.events().length === 1, 'the event');
    const [block] = c.events();
    expect(block.id).toBe(String(e.position));
    expect(block.event).toBe('project.created');
    expect(JSON.parse(block.data!)).toMatchObject({ id: e.id, type: 'project.created', payload: { name: 'Apollo' }, position: e.position });
    expect(bus.metrics().sseConnections).toBe(1);
    c.abort();
    await eventually(() => bus.metrics().sseConnections === 0, 'the connection to be released');
  });

  it('tells a client without a last id where it stands, so a reconnect before any event misses nothing', async () => {
    bus = await open();
    const server = await bus.sse.listen();
    const before = await bus.publish({ type: 'a.b', payload: 'before' });
    const first = rawClient(server.url);
    await eventually(() => first.blocks.some((b) => b.id !== undefined), 'the starting id');
    const start = first.blocks.find((b) => b.id !== undefined)!;
    expect(start).toEqual({ id: String(before.position) });
    first.abort();
    const missed = await bus.publish({ type: 'a.b', payload: 'while away' });
    const again = rawClient(server.url, { 'Last-Event-ID': start.id! });
    await eventually(() => again.events().length === 1, 'the missed event');
    expect(again.events()[0].id).toBe(String(missed.position));
    again.abort();
  });

  it('sends a heartbeat comment within the interval', async () => {
    bus = await open({ sse: { heartbeatIntervalMs: 100 } });
    const server = await bus.sse.listen();
    const c = rawClient(server.url);
    await eventually(() => c.blocks.some((b) => b.comment === 'heartbeat'), 'a heartbeat', 5_000);
    c.abort();
  });

  it('never leaves a stream silent for longer than the heartbeat interval, before or after an event', async () => {
    // A proxy whose idle timeout equals the interval must never see a longer gap between writes.
    const interval = 300;
    const slack = 100;
    bus = await open({ sse: { heartbeatIntervalMs: interval } });
    const server = await bus.sse.listen({ host: '127.0.0.1' });
    const c = rawClient(server.url);
    await eventually(() => c.blocks.length >= 3, 'the preamble', 5_000);
    await new Promise((r) => setTimeout(r, 1_000));
    // Midway between two heartbeats (for a timer that ticks from the start).
    await new Promise((r) => setTimeout(r, interval / 2));
    await bus.publish({ type: 'a.b', payload: 1 });
    await new Promise((r) => setTimeout(r, 1_000));
    c.abort();
    expect(c.events()).toHaveLength(1);
    const writes = [...new Set(c.arrivals)];
    const gaps = writes.slice(1).map((t, i) => Math.round(t - writes[i]));
    expect(gaps.filter((gap) => gap > interval + slack)).toEqual([]);
    expect(c.blocks.filter((b) => b.comment === 'heartbeat').length).toBeGreaterThanOrEqual(5);
  });

  it('works with the eventsource client: named events, or plain messages with format=message', async () => {
    bus = await open();
    const server = await bus.sse.listen();
    const named: string[] = [];
    const plain: string[] = [];
    const a = new EventSource(`${server.url}?types=order.*`);
    a.addEventListener('order.placed', (m) => named.push(JSON.parse(m.data).payload));
    const b = new EventSource(`${server.url}?format=message&projectId=p1`);
    b.onmessage = (m) => plain.push(JSON.parse(m.data).payload);
    await eventually(() => bus.metrics().sseConnections === 2, 'two connections');
    await bus.publish({ type: 'order.placed', payload: 'a', projectId: 'p1' });
    await bus.publish({ type: 'user.created', payload: 'b', projectId: 'p1' });
    await bus.publish({ type: 'order.placed', payload: 'c', projectId: 'p2' });
    await eventually(() => named.length === 2 && plain.length === 2, 'both clients');
    expect(named).toEqual(['a', 'c']);
    expect(plain).toEqual(['a', 'b']);
    a.close();
    b.close();
    await eventually(() => bus.metrics().sseConnections === 0, 'both connections released');
  });

  it.each([
    ['the in-memory ring', 10_000],
    ['the store (ring too small)', 3],
  ])('reconnecting with Last-Event-ID while publishing continuously: nothing missing, nothing twice (%s)', async (_how, replayBufferSize) => {
    bus = await open({ sse: { replayBufferSize } });
    const server = await bus.sse.listen();
    const published: number[] = [];
    let publishing = true;
    const publisher = (async () => {
      for (let i = 0; publishing; i++) {
        published.push((await bus.publish({ type: 'tick.tock', payload: i })).position as number);
        if (i % 5 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const seen: number[] = [];
    let last: string | undefined;
    for (let round = 0; round < 5; round++) {
      // The first connection replays from the beginning (publishing has started already).
      const c = rawClient(server.url, { 'Last-Event-ID': last ?? '0' });
      const before = seen.length;
      await eventually(() => c.events().length >= 20, 'events on this connection');
      c.abort();
      // Events keep committing while disconnected.
      await new Promise((r) => setTimeout(r, 20));
      for (const b of c.events()) seen.push(Number(b.id));
      last = c.events().at(-1)!.id;
      expect(seen.length).toBeGreaterThan(before);
    }
    publishing = false;
    await publisher;
    const c = rawClient(server.url, { 'Last-Event-ID': last! });
    await eventually(() => Number(c.events().at(-1)?.id) === published.at(-1), 'the rest');
    for (const b of c.events()) seen.push(Number(b.id));
    c.abort();
    expect(seen).toEqual(published.slice(0, seen.length));
    expect(seen).toEqual(published);
  });

  it('refuses with 401 when authorize returns null, and enforces the grant on live and replayed events', async () => {
    bus = await open({ sse: { replayBufferSize: 2 } });
    const server = await bus.sse.listen({
      authorize: (req) => (req.headers.authorization ? { tenantId: req.headers.authorization } : null),
    });
    const refused = rawClient(server.url);
    await eventually(() => refused.status !== 0, 'the answer');
    expect(refused.status).toBe(401);
    for (let i = 0; i < 5; i++) {
      await bus.publish({ type: 'doc.saved', payload: `A${i}`, tenantId: 'A' });
      await bus.publish({ type: 'doc.saved', payload: `B${i}`, tenantId: 'B' });
    }
    // Replayed (store and ring) then live; asking for tenant B's events changes nothing.
    const a = rawClient(`${server.url}?tenantId=B`, { authorization: 'A', 'Last-Event-ID': '0' });
    const plainA = rawClient(server.url, { authorization: 'A', 'Last-Event-ID': '0' });
    await eventually(() => plainA.events().length === 5, 'the replay');
    await bus.publish({ type: 'doc.saved', payload: 'A-live', tenantId: 'A' });
    await bus.publish({ type: 'doc.saved', payload: 'B-live', tenantId: 'B' });
    await eventually(() => plainA.events().length === 6, 'the live event');
    await new Promise((r) => setTimeout(r, 100));
    expect(plainA.events().map((b) => JSON.parse(b.data!).payload)).toEqual(['A0', 'A1', 'A2', 'A3', 'A4', 'A-live']);
    expect(a.events()).toEqual([]);
    a.abort();
    plainA.abort();
  });

  it('sends event: reset when the last id is older than the log holds', async () => {
    bus = await open();
    const server = await bus.sse.listen();
    for (let i = 0; i < 3; i++) await bus.publish({ type: 'a.b', payload: i });
    await bus.archive({ olderThan: new Date(Date.now() + 60_000) });
    const kept = await bus.publish({ type: 'a.b', payload: 'kept' });
    const c = rawClient(server.url, { 'Last-Event-ID': '1' });
    await eventually(() => c.blocks.some((b) => b.event === 'reset'), 'the reset');
    await bus.publish({ type: 'a.b', payload: 'live' });
    await eventually(() => c.events().length === 1, 'the live event');
    expect(JSON.parse(c.events()[0].data!).payload).toBe('live');
    expect(bus.metrics().sseResets).toBe(1);
    void kept;
    c.abort();
  });

  it('drops a client that stops reading while another keeps receiving', async () => {
    bus = await open({ sse: { clientBufferSize: 256 } });
    const server = await bus.sse.listen();
    const slow = rawClient(server.url);
    const fast = rawClient(server.url);
    await eventually(() => slow.blocks.length >= 2 && fast.blocks.length >= 2, 'both connected');
    slow.pause();
    // 32 MB in all: more than the loopback socket buffers and the slow client's queue can hold.
    const big = 'x'.repeat(16_000);
    const n = 2_000;
    for (let i = 0; i < n; i += 100) {
      await bus.publishMany(Array.from({ length: 100 }, (_, j) => ({ type: 'big.blob', payload: { i: i + j, big } })));
    }
    await eventually(() => fast.events().length === n, 'the fast client to get everything');
    await eventually(() => bus.metrics().sseDropped === 1, 'the slow client to be dropped');
    // Closed on the server's side although the client still is not reading (hyper, waiting to
    // write to it, would otherwise keep the socket): one established server socket is left.
    await eventually(() => establishedServerSockets(server.url) === 1, 'the slow connection to be closed by the server');
    expect(fast.ended).toBe(false);
    expect(bus.metrics().sseConnections).toBe(1);
    slow.abort();
    fast.abort();
  });

  it('1,000 connections opened and aborted leave the connection count at 0', async () => {
    bus = await open();
    const server = await bus.sse.listen();
    const agent = new http.Agent({ maxSockets: Infinity });
    const requests = Array.from({ length: 1000 }, () => http.get(server.url, { agent }, (res) => res.resume()).on('error', () => undefined));
    await eventually(() => bus.metrics().sseConnections === 1000, '1000 connections', 60_000);
    for (const r of requests) r.destroy();
    await eventually(() => bus.metrics().sseConnections === 0, 'every connection released', 60_000);
    agent.destroy();
  });

  it('answers CORS requests when cors is on', async () => {
    bus = await open();
    const server = await bus.sse.listen({ cors: true });
    const c = rawClient(server.url, { origin: 'http://app.example' });
    await eventually(() => c.status !== 0, 'the answer');
    expect(c.headers['access-control-allow-origin']).toBe('http://app.example');
    expect(c.headers['access-control-allow-credentials']).toBe('true');
    c.abort();
  });

  it('closing the server ends its streams', async () => {
    bus = await open();
    const server = await bus.sse.listen();
    const c = rawClient(server.url);
    await eventually(() => c.blocks.length >= 2, 'connected');
    await server.close();
    await eventually(() => c.ended, 'the stream to end');
    expect(bus.metrics().sseConnections).toBe(0);
  });
});

describe('sse.stream for NestJS @Sse()', () => {
  it('replays after lastEventId, then goes live; breaking the loop unsubscribes', async () => {
    const store = await postgresStore();
    const bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined, sse: { replayBufferSize: 2 } });
    const first = await bus.publish({ type: 'a.one', payload: 1 });
    const second = await bus.publish({ type: 'a.two', payload: 2, projectId: 'p' });
    await bus.publish({ type: 'b.three', payload: 3 });
    const got: Array<{ id?: string; type: string; payload?: unknown }> = [];
    const consumer = (async () => {
      for await (const m of bus.sse.stream({ types: ['a.*'], lastEventId: String(first.position) })) {
        got.push({ id: m.id, type: m.type, payload: m.data?.payload });
        if (got.length === 2) break;
      }
    })();
    await eventually(() => got.length === 1, 'the replay');
    const live = await bus.publish({ type: 'a.four', payload: 4 });
    await consumer;
    expect(got).toEqual([
      { id: String(second.position), type: 'a.two', payload: 2 },
      { id: String(live.position), type: 'a.four', payload: 4 },
    ]);
    await eventually(() => bus.metrics().sseConnections === 0, 'the stream to be released');
    await bus.close();
    await store.drop();
  });

  it('a tenantId filter streams only that tenant', async () => {
    const bus = await open();
    const messages: string[] = [];
    const consumer = (async () => {
      for await (const m of bus.sse.stream({ tenantId: 'A' })) {
        messages.push(m.data!.payload as string);
        if (messages.length === 2) break;
      }
    })();
    await eventually(() => bus.metrics().sseConnections === 1, 'the stream');
    await bus.publish({ type: 'x.y', payload: 'a1', tenantId: 'A' });
    await bus.publish({ type: 'x.y', payload: 'b1', tenantId: 'B' });
    await bus.publish({ type: 'x.y', payload: 'a2', tenantId: 'A' });
    await consumer;
    expect(messages).toEqual(['a1', 'a2']);
    await bus.close();
  });

  it('a tenant handle streams only its tenant, and refuses to stream another', async () => {
    const bus = await open();
    const a = bus.forTenant('A');
    const messages: string[] = [];
    const consumer = (async () => {
      for await (const m of a.sse.stream({ types: ['x.*'] })) {
        messages.push(m.data!.payload as string);
        if (messages.length === 2) break;
      }
    })();
    await eventually(() => bus.metrics().sseConnections === 1, 'the stream');
    await bus.publish({ type: 'x.y', payload: 'a1', tenantId: 'A' });
    await bus.publish({ type: 'x.y', payload: 'untenanted' });
    await bus.publish({ type: 'x.y', payload: 'b1', tenantId: 'B' });
    await a.publish({ type: 'x.y', payload: 'a2' });
    await consumer;
    expect(messages).toEqual(['a1', 'a2']);
    await expect(a.sse.stream({ tenantId: 'B' }).next()).rejects.toMatchObject({ code: 'FORBIDDEN', message: expect.stringContaining('B') });
    await bus.close();
  });

  it('ends when the bus closes', async () => {
    const bus = await open();
    const ended = (async () => {
      for await (const _ of bus.sse.stream()) void _;
      return 'ended';
    })();
    await eventually(() => bus.metrics().sseConnections === 1, 'the stream');
    await bus.close();
    await expect(ended).resolves.toBe('ended');
  });
});
