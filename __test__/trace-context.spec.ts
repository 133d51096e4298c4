// A W3C traceparent set on publish (from the active OpenTelemetry span, in a child process)
// arrives on a handler in this process, on a webhook request as headers, and on an SSE stream.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { EventBus, type BusEvent } from '@situs/event-bus';
import { until } from './helpers';
import { postgresStore } from './stores';

jest.setTimeout(60_000);

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

/** Publishes one `traced.done` inside an active span (OpenTelemetry API + AsyncLocalStorage). */
const PUBLISHER = `
  const api = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { EventBus } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  (async () => {
    const bus = await EventBus.open({ storeUrl: process.env.URL, logger: () => {}, webhook: { workers: false } });
    const span = { traceId: '${TRACE_ID}', spanId: '${SPAN_ID}', traceFlags: 1, traceState: api.createTraceState('vendor=abc') };
    const ctx = api.trace.setSpanContext(api.context.active(), span);
    await api.context.with(ctx, () => bus.publish({ type: 'traced.done', payload: { n: 1 } }));
    // Outside any span: nothing is added.
    await bus.publish({ type: 'traced.plain', payload: { n: 2 } });
    await bus.close();
  })().catch((err) => { console.error(err); process.exit(1); });`;

describe('trace context', () => {
  it('crosses to a handler in another process, to a webhook and to SSE', async () => {
    const pg = await postgresStore();
    const requests: http.IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.headers);
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const bus = await EventBus.open({
      storeUrl: pg.url,
      logger: () => {},
      webhook: { allowHttp: true, allowPrivateNetworks: true, backoff: { initialMs: 50, maxMs: 50 } },
    });
    try {
      await bus.webhooks.register({ url: `http://127.0.0.1:${port}/hook`, events: ['traced.*'] });
      const handled: BusEvent[] = [];
      bus.subscribe('traced.*', (e) => {
        handled.push(e);
      });
      const sse: Array<{ type: string; metadata?: unknown }> = [];
      const stream = (async () => {
        for await (const m of bus.sse.stream({ types: ['traced.*'] })) {
          if (m.data) sse.push(m.data as { type: string; metadata?: unknown });
          if (sse.length === 2) break;
        }
      })();
      const child = spawn(process.execPath, ['-e', PUBLISHER], { env: { ...process.env, URL: pg.url }, stdio: ['ignore', 'inherit', 'inherit'] });
      const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      expect(code).toBe(0);
      await until(() => handled.length === 2 && requests.length === 2 && sse.length === 2, 'the handler, the webhook and SSE');
      await stream;

      const traced = handled.find((e) => e.type === 'traced.done')!;
      expect(traced.metadata).toEqual({ traceparent: TRACEPARENT, tracestate: 'vendor=abc' });
      expect(handled.find((e) => e.type === 'traced.plain')!.metadata).toBeUndefined();

      const hooked = requests.filter((h) => h.traceparent !== undefined);
      expect(hooked).toHaveLength(1);
      expect(hooked[0]).toMatchObject({ traceparent: TRACEPARENT, tracestate: 'vendor=abc' });

      expect(sse.find((e) => e.type === 'traced.done')!.metadata).toEqual({ traceparent: TRACEPARENT, tracestate: 'vendor=abc' });
    } finally {
      await bus.close();
      await new Promise((r) => server.close(r));
      await pg.drop();
    }
  });

  it('keeps a traceparent the caller set, and adds none without an active span', async () => {
    const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
    try {
      const own = '00-11111111111111111111111111111111-2222222222222222-00';
      expect((await bus.publish({ type: 'a.b', payload: {}, metadata: { traceparent: own } })).metadata).toEqual({ traceparent: own });
      expect((await bus.publish({ type: 'a.b', payload: {} })).metadata).toBeUndefined();
    } finally {
      await bus.close();
    }
  });
});
