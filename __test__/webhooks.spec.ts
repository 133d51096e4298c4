import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { EventBus, EventBusOptions, LogRecord } from '@situs/event-bus';
import { postgresStore, sqliteStore } from './stores';

jest.setTimeout(120_000);

/** Every receiver a test started, closed after each test even when it failed midway. */
const receivers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((close) => close()));
});

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An HTTP receiver on 127.0.0.1 that records every request and answers with `respond`. */
async function receiver(
  respond: (req: Received, n: number) => { status: number; headers?: Record<string, string>; delayMs?: number } | 'hang' = () => ({
    status: 204,
  }),
) {
  const received: Received[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const r = { headers: req.headers, body };
      received.push(r);
      const answer = respond(r, received.length);
      if (answer === 'hang') return;
      setTimeout(() => {
        res.writeHead(answer.status, answer.headers);
        res.end('response body '.repeat(200));
      }, answer.delayMs ?? 0);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  receivers.push(close);
  return { url: `http://127.0.0.1:${port}/hook`, received, close };
}

/** Polls (bounded) until `predicate` holds; what follows asserts the outcome. */
async function eventually(predicate: () => boolean | Promise<boolean>, what: string, limitMs = 60_000): Promise<void> {
  for (let waited = 0; waited < limitMs; waited += 20) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}

const LOCAL: EventBusOptions['webhook'] = {
  allowHttp: true,
  allowPrivateNetworks: true,
  pollIntervalMs: 50,
  backoff: { initialMs: 20, maxMs: 100, factor: 2 },
};

const backends: Array<[string, () => Promise<{ url: string; drop: () => Promise<void> }>]> = [
  ['postgres', postgresStore],
  ['sqlite', async () => sqliteStore()],
];

describe.each(backends)('%s: webhooks', (_name, makeStore) => {
  let store: { url: string; drop: () => Promise<void> };
  let bus: EventBus;
  const open = (webhook: EventBusOptions['webhook'] = {}) =>
    EventBus.open({ storeUrl: store.url, logger: () => undefined, webhook: { ...LOCAL, ...webhook } });

  beforeEach(async () => {
    store = await makeStore();
  });
  afterEach(async () => {
    await bus?.close();
    await store.drop();
  });

  it('delivers signed events that standardwebhooks and svix verify', async () => {
    bus = await open();
    const r = await receiver();
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['order.*'], description: 'orders' });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(endpoint).toMatchObject({ url: r.url, events: ['order.*'], enabled: true, description: 'orders' });
    const placed = await bus.publish({ type: 'order.placed', payload: { total: 42 }, projectId: 'p1' });
    await bus.publish({ type: 'user.created', payload: {} });
    await eventually(() => r.received.length === 1, 'the delivery');
    const [req] = r.received;
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['user-agent']).toMatch(/^situs-event-bus\//);
    const headers = {
      'webhook-id': req.headers['webhook-id'] as string,
      'webhook-timestamp': req.headers['webhook-timestamp'] as string,
      'webhook-signature': req.headers['webhook-signature'] as string,
    };
    expect(Math.abs(Number(headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(300);
    const verified = new StandardWebhook(endpoint.secret).verify(req.body, headers) as Record<string, unknown>;
    expect(verified).toEqual(JSON.parse(req.body));
    expect(JSON.parse(req.body)).toMatchObject({ id: placed.id, type: 'order.placed', payload: { total: 42 }, projectId: 'p1', position: placed.position });
    new SvixWebhook(endpoint.secret).verify(req.body, {
      'svix-id': headers['webhook-id'],
      'svix-timestamp': headers['webhook-timestamp'],
      'svix-signature': headers['webhook-signature'],
    });
    expect(() => new StandardWebhook(endpoint.secret).verify(req.body + ' ', headers)).toThrow();
    // The attempt is recorded just after the receiver answered.
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'delivered' })).length === 1, 'the recorded delivery');
    const [delivery] = await bus.webhooks.deliveries({ endpointId: endpoint.id });
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, position: placed.position, lastStatus: 204 });
    expect(delivery.attemptLog).toHaveLength(1);
    expect(delivery.attemptLog[0]).toMatchObject({ attempt: 1, statusCode: 204 });
    await r.close();
  });

  it('signs with the old and the new secret after a rotation', async () => {
    bus = await open();
    const r = await receiver();
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['**'] });
    const rotated = await bus.webhooks.update(endpoint.id, { rotateSecret: true });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(endpoint.secret);
    await bus.publish({ type: 'a.b', payload: 1 });
    await eventually(() => r.received.length === 1, 'the delivery');
    const req = r.received[0];
    const headers = {
      'webhook-id': req.headers['webhook-id'] as string,
      'webhook-timestamp': req.headers['webhook-timestamp'] as string,
      'webhook-signature': req.headers['webhook-signature'] as string,
    };
    expect(headers['webhook-signature'].split(' ')).toHaveLength(2);
    new StandardWebhook(endpoint.secret).verify(req.body, headers);
    new StandardWebhook(rotated.secret!).verify(req.body, headers);
    await r.close();
  });

  it('retries failures with backoff, honouring Retry-After, then delivers', async () => {
    bus = await open({ retryAttempts: 3 });
    const r = await receiver((_req, n) => (n === 1 ? { status: 503, headers: { 'retry-after': '0' } } : n < 3 ? { status: 500 } : { status: 200 }));
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['**'] });
    await bus.publish({ type: 'a.b', payload: 1 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'delivered' })).length === 1, 'the delivery');
    expect(r.received).toHaveLength(3);
    expect(new Set(r.received.map((q) => q.headers['webhook-id'])).size).toBe(1);
    const [d] = await bus.webhooks.deliveries({ endpointId: endpoint.id });
    expect(d.attempts).toBe(3);
    expect(d.attemptLog.map((a) => a.statusCode)).toEqual([503, 500, 200]);
    expect(d.attemptLog[0].responseBody!.length).toBeLessThanOrEqual(1024);
    expect(d.attemptLog[0].responseBody).toMatch(/^response body/);
    expect(bus.metrics()).toMatchObject({ webhooksDelivered: 1, webhookFailures: 2 });
    await r.close();
  });

  it('delivery records name their event and the webhook-id sent, and are found by eventId', async () => {
    bus = await open();
    const r = await receiver();
    const orders = await bus.webhooks.register({ url: r.url, events: ['order.*'] });
    const placedOnly = await bus.webhooks.register({ url: r.url, events: ['order.placed'] });
    const placed = await bus.publish({ type: 'order.placed', payload: 1 });
    const paid = await bus.publish({ type: 'order.paid', payload: 2 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'delivered' })).length === 3, 'three recorded deliveries');
    const every = await bus.webhooks.deliveries();
    expect(every).toHaveLength(3);
    for (const d of every) {
      // What an operator reads is what the receiver got: the header, and the event in the body.
      const sent = r.received.filter((q) => q.headers['webhook-id'] === d.webhookId);
      expect(sent).toHaveLength(1);
      expect(JSON.parse(sent[0].body)).toMatchObject({ id: d.eventId, type: d.eventType, position: d.position });
    }
    const ofPlaced = await bus.webhooks.deliveries({ eventId: placed.id });
    expect(ofPlaced.map((d) => d.endpointId).sort()).toEqual([orders.id, placedOnly.id].sort());
    expect(ofPlaced.every((d) => d.eventId === placed.id && d.eventType === 'order.placed')).toBe(true);
    expect(await bus.webhooks.deliveries({ eventId: paid.id })).toMatchObject([{ endpointId: orders.id, eventId: paid.id, eventType: 'order.paid' }]);
    expect(await bus.webhooks.deliveries({ eventId: paid.id, endpointId: placedOnly.id })).toEqual([]);
    expect(await bus.webhooks.deliveries({ eventId: '01890a5d-ac96-774b-bcce-b302099a8057' })).toEqual([]);
    for (const bad of ['nope', 42, '']) {
      await expect(bus.webhooks.deliveries({ eventId: bad as never })).rejects.toMatchObject({
        code: 'INVALID_EVENT',
        message: expect.stringContaining('eventId'),
      });
    }
    await r.close();
  });

  it('logs failed and dead deliveries with a readable cause and no Rust debug syntax', async () => {
    const records: LogRecord[] = [];
    bus = await EventBus.open({
      storeUrl: store.url,
      logLevel: 'debug',
      logger: (record) => records.push(record),
      webhook: { ...LOCAL, retryAttempts: 1 },
    });
    const r = await receiver(() => ({ status: 500 }));
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['**'] });
    const e = await bus.publish({ type: 'a.b', payload: 1 });
    const find = (message: string) => records.find((x) => x.message === message);
    await eventually(() => find('webhook delivery is dead') !== undefined, 'the dead-delivery log record');
    const retried = find('webhook attempt failed; will retry');
    const dead = find('webhook delivery is dead');
    for (const record of [retried, dead]) {
      expect(JSON.stringify(record?.fields)).not.toMatch(/None|Some\(/);
      expect(record?.fields).toMatchObject({ endpoint: endpoint.id, event: e.id, status: 500, error: 'the endpoint answered HTTP 500' });
    }
    expect(dead?.level).toBe('warn');
    await r.close();
  });

  it('gives up after the last retry, keeps every attempt, and replays on request', async () => {
    bus = await open({ retryAttempts: 2 });
    let healthy = false;
    const r = await receiver(() => ({ status: healthy ? 200 : 500 }));
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['**'] });
    await bus.publish({ type: 'a.b', payload: 1 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'dead' })).length === 1, 'a dead delivery');
    const [dead] = await bus.webhooks.deliveries({ endpointId: endpoint.id, status: 'dead' });
    expect(dead.attempts).toBe(3);
    expect(dead.attemptLog.map((a) => a.statusCode)).toEqual([500, 500, 500]);
    healthy = true;
    await expect(bus.webhooks.replayFailed({ endpointId: endpoint.id })).resolves.toEqual({ replayed: 1 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'delivered' })).length === 1, 'the replay');
    expect(r.received).toHaveLength(4);
    await bus.webhooks.replay(dead.id);
    await eventually(() => r.received.length === 5, 'a second replay');
    expect(new Set(r.received.map((q) => q.headers['webhook-id'])).size).toBe(1);
    await expect(bus.webhooks.replay(999_999)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await r.close();
  });

  it('times out a receiver that never answers', async () => {
    bus = await open({ retryAttempts: 1, timeoutMs: 200 });
    const r = await receiver(() => 'hang');
    await bus.webhooks.register({ url: r.url, events: ['**'] });
    await bus.publish({ type: 'a.b', payload: 1 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'dead' })).length === 1, 'the timeouts');
    const [d] = await bus.webhooks.deliveries({});
    expect(d.attemptLog.map((a) => a.error)).toEqual(['timed out after 200 ms', 'timed out after 200 ms']);
    expect(d.attemptLog.every((a) => a.statusCode === null)).toBe(true);
    await r.close();
  });

  it('410 Gone disables the endpoint and announces it on the bus', async () => {
    bus = await open();
    const r = await receiver(() => ({ status: 410 }));
    const announced: unknown[] = [];
    bus.subscribe('webhook.endpoint_disabled', (e) => {
      announced.push(e.payload);
    });
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['a.*'], tenantId: 't1' });
    await bus.publish({ type: 'a.b', payload: 1, tenantId: 't1' });
    await eventually(() => announced.length === 1, 'the announcement');
    expect(announced[0]).toEqual({ endpointId: endpoint.id, url: r.url, reason: 'the endpoint answered 410 Gone' });
    expect(await bus.webhooks.get(endpoint.id)).toMatchObject({ enabled: false, disabledReason: 'the endpoint answered 410 Gone' });
    // One dead delivery, counted once, under its endpoint.
    expect(bus.metrics()).toMatchObject({ webhooksDead: 1, webhookFailures: 1, webhooksDelivered: 0, webhookSuccessRate: 0 });
    expect(bus.metricsText()).toContain(`situs_event_bus_webhook_attempts_total{endpoint="${endpoint.id}",outcome="dead"} 1\n`);
    await bus.publish({ type: 'a.b', payload: 2, tenantId: 't1' });
    expect(await bus.webhooks.deliveries({ endpointId: endpoint.id })).toHaveLength(1);
    expect(r.received).toHaveLength(1);
    await r.close();
  });

  it('disables an endpoint after N dead deliveries in a row', async () => {
    bus = await open({ retryAttempts: 0, disableAfterFailures: 3 });
    const r = await receiver(() => ({ status: 500 }));
    const endpoint = await bus.webhooks.register({ url: r.url, events: ['**'] });
    const announced: unknown[] = [];
    bus.subscribe('webhook.endpoint_disabled', (e) => {
      announced.push(e.payload);
    });
    for (let i = 0; i < 3; i++) await bus.publish({ type: 'a.b', payload: i });
    await eventually(() => announced.length === 1, 'the endpoint to be disabled');
    expect(await bus.webhooks.get(endpoint.id)).toMatchObject({ enabled: false, consecutiveFailures: 3 });
    const enabled = await bus.webhooks.update(endpoint.id, { enabled: true });
    expect(enabled).toMatchObject({ enabled: true, consecutiveFailures: 0, disabledReason: null });
    await r.close();
  });

  it('scopes endpoints to a tenant and a project', async () => {
    bus = await open();
    const a = await receiver();
    const b = await receiver();
    await bus.webhooks.register({ url: a.url, events: ['**'], tenantId: 'A' });
    await bus.webhooks.register({ url: b.url, events: ['**'], tenantId: 'B', projectId: 'p1' });
    await bus.publish({ type: 'x.y', payload: 'a', tenantId: 'A' });
    await bus.publish({ type: 'x.y', payload: 'b-other-project', tenantId: 'B', projectId: 'p2' });
    await bus.publish({ type: 'x.y', payload: 'b', tenantId: 'B', projectId: 'p1' });
    await bus.publish({ type: 'x.y', payload: 'none' });
    await eventually(() => a.received.length === 1 && b.received.length === 1, 'both deliveries');
    await new Promise((r) => setTimeout(r, 300));
    expect(a.received.map((q) => JSON.parse(q.body).payload)).toEqual(['a']);
    expect(b.received.map((q) => JSON.parse(q.body).payload)).toEqual(['b']);
    expect((await bus.webhooks.list({ tenantId: 'A' })).map((e) => e.url)).toEqual([a.url]);
    await a.close();
    await b.close();
  });

  it('a slow endpoint does not starve the others', async () => {
    bus = await open({ concurrency: 4, perEndpointConcurrency: 2 });
    const slow = await receiver(() => ({ status: 200, delayMs: 2000 }));
    const fast = await receiver();
    await bus.webhooks.register({ url: slow.url, events: ['slow.*'] });
    await bus.webhooks.register({ url: fast.url, events: ['fast.*'] });
    await bus.publishMany(Array.from({ length: 20 }, (_, i) => ({ type: 'slow.x', payload: i })));
    await bus.publishMany(Array.from({ length: 20 }, (_, i) => ({ type: 'fast.x', payload: i })));
    await eventually(() => fast.received.length === 20, 'the fast endpoint');
    // Sent while the slow endpoint's requests are still waiting: at most its limit was taken.
    expect(slow.received.length).toBeLessThan(20);
    await slow.close();
    await fast.close();
  });

  it('manages endpoints and refuses bad input with INVALID_EVENT naming the field', async () => {
    bus = await open({ allowHttp: false, allowPrivateNetworks: false });
    for (const [input, message] of [
      [{ url: 'ftp://example.com', events: ['**'] }, 'url must be http or https'],
      [{ url: 'http://example.com', events: ['**'] }, 'url must use https'],
      [{ url: 'https://10.0.0.8/x', events: ['**'] }, 'private'],
      [{ url: 'https://169.254.169.254/latest/meta-data', events: ['**'] }, 'link-local'],
      [{ url: 'https://[::1]/', events: ['**'] }, 'loopback'],
      [{ url: 'https://[::ffff:127.0.0.1]/', events: ['**'] }, 'loopback'],
      [{ url: 'https://localhost/', events: ['**'] }, 'resolves to'],
      [{ url: 'https://example.com', events: [] }, 'events must list at least one pattern'],
      [{ url: 'https://example.com', events: ['a.**.b'] }, 'events'],
      [{ url: 'https://example.com', events: ['**'], secret: 'hunter2' }, 'secret must be'],
      [{ url: 'https://example.com', events: ['**'], colour: 'red' }, 'colour'],
    ] as const) {
      await expect(bus.webhooks.register(input as never)).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining(message) });
    }
    expect(await bus.webhooks.list()).toEqual([]);
    const secret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const e = await bus.webhooks.register({ url: 'https://example.com/hook', events: ['a.*'], secret });
    expect(e.secret).toBe(secret);
    const got = await bus.webhooks.get(e.id);
    expect(got).not.toHaveProperty('secret');
    const updated = await bus.webhooks.update(e.id, { url: 'https://example.org/hook', events: ['b.**'], description: 'moved' });
    expect(updated).toMatchObject({ url: 'https://example.org/hook', events: ['b.**'], description: 'moved' });
    expect(updated.secret).toBeUndefined();
    await bus.webhooks.remove(e.id);
    await expect(bus.webhooks.get(e.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(bus.webhooks.remove(e.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(bus.webhooks.get('nope')).rejects.toMatchObject({ code: 'INVALID_EVENT' });
  });

  it('refuses to send to private addresses and does not follow redirects', async () => {
    // Registered while private networks were allowed; sent by a bus that refuses them.
    const permissive = await open();
    const target = await receiver();
    const redirecting = await receiver(() => ({ status: 302, headers: { location: target.url } }));
    await permissive.webhooks.register({ url: redirecting.url, events: ['r.*'] });
    await permissive.webhooks.register({ url: target.url.replace('127.0.0.1', 'localhost'), events: ['named.*'] });
    await permissive.close();
    bus = await open({ allowPrivateNetworks: false, retryAttempts: 0 });
    await bus.publish({ type: 'named.x', payload: 1 });
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'dead' })).length === 1, 'the refused delivery');
    const [refused] = await bus.webhooks.deliveries({ status: 'dead' });
    expect(refused.attemptLog[0].error).toMatch(/localhost resolves to .* (loopback)/);
    expect(target.received).toHaveLength(0);
    await bus.close();

    bus = await open({ retryAttempts: 0 });
    await bus.publish({ type: 'r.x', payload: 1 });
    await eventually(() => redirecting.received.length === 1, 'the redirecting receiver');
    await eventually(async () => (await bus.webhooks.deliveries({ status: 'dead' })).length === 2, 'the redirect to count as a failure');
    expect(target.received).toHaveLength(0);
    await target.close();
    await redirecting.close();
  });
});

describe('postgres: webhooks survive a crash', () => {
  it('a process killed with SIGKILL mid-way: a new process delivers every acknowledged event', async () => {
    const store = await postgresStore();
    const r = await receiver();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-webhooks-'));
    const acked = path.join(dir, 'acked.log');
    const setup = await EventBus.open({ storeUrl: store.url, logger: () => undefined, webhook: LOCAL });
    await setup.webhooks.register({ url: r.url, events: ['crash.*'] });
    await setup.close();
    const script = `
      const fs = require('node:fs');
      const { EventBus } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
      (async () => {
        const bus = await EventBus.open({ storeUrl: process.env.URL, logger: () => {}, webhook: ${JSON.stringify({ ...LOCAL, timeoutMs: 1000 })} });
        for (let i = 0; i < 2000; i += 10) {
          const batch = await Promise.all(Array.from({ length: 10 }, (_, j) => bus.publish({ type: 'crash.test', payload: i + j })));
          fs.appendFileSync(process.env.ACKED, batch.map((e) => e.id).join('\\n') + '\\n');
        }
      })().catch((err) => { console.error(err); process.exit(1); });`;
    const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, URL: store.url, ACKED: acked } });
    const ackedIds = () => (fs.existsSync(acked) ? fs.readFileSync(acked, 'utf8').split('\n').filter(Boolean) : []);
    await eventually(() => ackedIds().length >= 600, 'the child to publish');
    child.kill('SIGKILL');
    await new Promise((res) => child.on('exit', res));
    const acknowledged = ackedIds();
    expect(acknowledged.length).toBeLessThan(2000);
    const heir = await EventBus.open({ storeUrl: store.url, logger: () => undefined, webhook: LOCAL });
    const deliveredIds = () => new Set(r.received.map((q) => JSON.parse(q.body).id as string));
    await eventually(() => acknowledged.every((id) => deliveredIds().has(id)), 'every acknowledged event to be delivered', 90_000);
    expect(acknowledged.filter((id) => !deliveredIds().has(id))).toEqual([]);
    await heir.close();
    await r.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await store.drop();
  });
});

