import http from 'node:http';
import { EventBus } from '@situs/event-bus';
import { openBus, until } from './helpers';
import { postgresStore } from './stores';

/** `name{labels} value` lines of Prometheus text → value, keyed by the whole series. */
function series(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

describe('metrics', () => {
  let bus: EventBus;
  afterEach(() => bus?.close());

  it('times each JS handler call and counts a throwing one once, under the subscription\'s patterns', async () => {
    ({ bus } = await openBus());
    bus.subscribe(['job.*', 'task.*'], async (e) => {
      // Busy for at least 5 ms by the same clock the bus times with (timers may fire early).
      const end = performance.now() + 5;
      while (performance.now() < end);
      await Promise.resolve();
      if ((e.payload as { fail?: boolean }).fail) throw new Error('boom');
    });
    await bus.publish({ type: 'job.ran', payload: {} });
    await bus.publish({ type: 'job.ran', payload: { fail: true } });
    await bus.publish({ type: 'task.ran', payload: {} });
    await until(() => bus.metrics().handlerSeconds.count === 3, 'three timed calls');
    const m = bus.metrics();
    expect(m).toMatchObject({ delivered: 2, handlerErrors: 1 });
    // Each call took ≥ 5 ms, so the sum is at least 15 ms: the JS side's own timing went back.
    expect(m.handlerSeconds.sum).toBeGreaterThanOrEqual(0.015);
    const text = series(bus.metricsText());
    expect(text.get('situs_event_bus_handler_errors_total{consumer="job.*,task.*"}')).toBe(1);
    expect(text.get('situs_event_bus_handler_duration_seconds_count{consumer="job.*,task.*"}')).toBe(3);
    expect(text.get('situs_event_bus_events_published_total{type="job.ran"}')).toBe(2);
  });

  it('a group that gives up on an event counts one dead letter and its lag', async () => {
    const pg = await postgresStore();
    try {
      bus = await EventBus.open({ storeUrl: pg.url, metrics: { refreshIntervalMs: 100 }, logger: () => {} });
      bus.subscribe(
        'bill.*',
        () => {
          throw new Error('declined');
        },
        { group: 'billing', maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
      );
      await bus.publish({ type: 'bill.sent', payload: {} });
      await until(() => bus.metrics().deadLettered === 1, 'the dead letter');
      const text = series(bus.metricsText());
      expect(text.get('situs_event_bus_dead_lettered_total')).toBe(1);
      expect(text.get('situs_event_bus_handler_errors_total{consumer="billing"}')).toBe(2);
      expect(text.get('situs_event_bus_group_retries_total')).toBe(1);
      await until(() => bus.metrics().groups.some((g) => g.group === 'billing'), 'the group in the refresh');
    } finally {
      await bus.close();
      await pg.drop();
    }
  });

  it('serves /metrics over HTTP from the bus itself (metrics.listen), on 127.0.0.1', async () => {
    ({ bus } = await openBus({ metrics: { listen: { host: '127.0.0.1', port: 0 } } }));
    await bus.publish({ type: 'served.once', payload: {} });
    const url = bus.metricsUrl;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scraped = await get(url!);
    expect(scraped.status).toBe(200);
    expect(scraped.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(series(scraped.body).get('situs_event_bus_events_published_total{type="served.once"}')).toBe(1);
    expect((await get(url!.replace('/metrics', '/nope'))).status).toBe(404);
  });

  it('refuses a bad listen path, naming the field', async () => {
    await expect(EventBus.open({ storeUrl: 'memory:', metrics: { listen: { path: 'metrics' } } })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringContaining('metrics.listen.path'),
    });
  });
});

describe('health', () => {
  it('is healthy with every check ok on a working bus, and names the check past its limit', async () => {
    const { bus } = await openBus({ health: { maxWebhookBacklog: 0 }, webhook: { workers: false, allowHttp: true, allowPrivateNetworks: true } });
    try {
      expect(await bus.health()).toEqual({
        healthy: true,
        checks: { store: { ok: true }, listener: { ok: true }, webhookWorkers: { ok: true }, consumerGroups: { ok: true } },
      });
      await bus.webhooks.register({ url: 'http://127.0.0.1:9/hook', events: ['a.*'] });
      await bus.publish({ type: 'a.b', payload: {} });
      const report = await bus.health();
      expect(report.healthy).toBe(false);
      expect(report.checks.webhookWorkers).toEqual({ ok: false, reason: '1 webhook deliveries are waiting (more than 0)' });
    } finally {
      await bus.close();
    }
  });
});

describe('SSE replays', () => {
  it('count by source: from the ring when it still holds what the client missed, else from the store', async () => {
    const { bus } = await openBus({ sse: { replayBufferSize: 2 } });
    const firstMessage = async (lastEventId?: number) => {
      const options = lastEventId === undefined ? { types: ['r.*'] } : { types: ['r.*'], lastEventId: String(lastEventId) };
      for await (const m of bus.sse.stream(options)) return m;
      return undefined;
    };
    try {
      const before = [];
      for (let i = 0; i < 5; i++) before.push(await bus.publish({ type: 'r.e', payload: i }));
      // The hub starts with the first stream: its ring (2 events) holds what comes after.
      const live = firstMessage();
      await until(() => bus.metrics().sseConnections === 1, 'the first stream');
      await bus.publish({ type: 'r.e', payload: 5 });
      await bus.publish({ type: 'r.e', payload: 6 });
      await live;
      // Missed 6 and 7: the ring has them.
      await firstMessage(before[4].position!);
      expect(bus.metricsText()).toContain('situs_event_bus_sse_replays_total{source="ring"} 1\n');
      // Missed 5 too, which the ring never held: from the store.
      await firstMessage(before[3].position!);
      expect(bus.metricsText()).toContain('situs_event_bus_sse_replays_total{source="store"} 1\n');
    } finally {
      await bus.close();
    }
  });
});
