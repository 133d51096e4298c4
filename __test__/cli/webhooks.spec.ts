// webhooks list / deliveries / replay: the endpoint is registered by this test's bus (which
// runs the webhook workers, to a receiver on 127.0.0.1); the CLI only reads and replays.
import http from 'node:http';
import net from 'node:net';
import { EventBus } from '@situs/event-bus';
import type { WebhookDelivery, WebhookEndpoint } from '@situs/event-bus';
import { postgresStore } from '../stores';
import { cli, eventually, expectOneLineFailure, jsonLines, RunningCli } from './run-cli';

jest.setTimeout(120_000);

let store: Awaited<ReturnType<typeof postgresStore>>;
let bus: EventBus;
let server: http.Server;
let url: string;
let healthy = false;
const received: http.IncomingHttpHeaders[] = [];

beforeAll(async () => {
  store = await postgresStore();
  bus = await EventBus.open({
    storeUrl: store.url,
    logger: () => undefined,
    // No retries: a failed delivery is dead at once.
    webhook: { allowHttp: true, allowPrivateNetworks: true, retryAttempts: 0, pollIntervalMs: 50 },
  });
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.push(req.headers);
      res.writeHead(healthy ? 200 : 500);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`;
});
afterAll(async () => {
  await bus.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await store.drop();
});

const run = (...args: string[]) => cli(['webhooks', ...args, '--store-url', store.url]);
type DeliveryLine = Omit<WebhookDelivery, 'createdAt'> & { createdAt: string };

it('list, deliveries with their filters, replay one, replay --failed', async () => {
  const acme = await bus.webhooks.register({ url, events: ['order.*'], tenantId: 'acme', description: 'acme orders' });
  const all = await bus.webhooks.register({ url, events: ['**'] });

  // list: every endpoint, as JSON lines, without secrets; --tenant narrows.
  const list = await run('list');
  expect(list).toMatchObject({ code: 0, stderr: '' });
  const endpoints = jsonLines<WebhookEndpoint>(list.stdout);
  expect(endpoints.map((e) => e.id).sort()).toEqual([acme.id, all.id].sort());
  expect(endpoints.find((e) => e.id === acme.id)).toMatchObject({ url, events: ['order.*'], tenantId: 'acme', description: 'acme orders', enabled: true });
  expect(list.stdout).not.toContain(acme.secret);
  expect(list.stdout).not.toContain('whsec_');
  const acmeOnly = jsonLines<WebhookEndpoint>((await run('list', '--tenant', 'acme')).stdout);
  expect(acmeOnly.map((e) => e.id)).toEqual([acme.id]);

  // Two events fail (500, no retries): three dead deliveries.
  const order = await bus.publish({ type: 'order.placed', payload: 1, tenantId: 'acme' });
  const other = await bus.publish({ type: 'user.created', payload: 2, tenantId: 'acme' });
  await eventually(async () => (await bus.webhooks.deliveries({ status: 'dead' })).length === 3, 'three dead deliveries');

  const deliveries = await run('deliveries');
  expect(deliveries).toMatchObject({ code: 0, stderr: '' });
  const lines = jsonLines<DeliveryLine>(deliveries.stdout);
  expect(lines).toHaveLength(3);
  expect(lines.every((d) => d.status === 'dead' && d.attempts === 1 && d.attemptLog[0].statusCode === 500)).toBe(true);
  const ofAcme = jsonLines<DeliveryLine>((await run('deliveries', '--endpoint', acme.id)).stdout);
  expect(ofAcme.map((d) => [d.endpointId, d.eventId, d.eventType])).toEqual([[acme.id, order.id, 'order.placed']]);
  expect(jsonLines<DeliveryLine>((await run('deliveries', '--event', other.id)).stdout).map((d) => d.endpointId)).toEqual([all.id]);
  expect(jsonLines<DeliveryLine>((await run('deliveries', '--status', 'dead', '--limit', '2')).stdout)).toHaveLength(2);
  expect((await run('deliveries', '--status', 'delivered')).stdout).toBe('');

  // replay one: it is made due again; this test's workers send it, with the same webhook-id.
  healthy = true;
  const sentBefore = received.length;
  const replay = await run('replay', String(ofAcme[0].id));
  expect(replay).toMatchObject({ code: 0, stderr: '', stdout: `delivery ${ofAcme[0].id} due again\n` });
  await eventually(async () => (await bus.webhooks.deliveries({ endpointId: acme.id }))[0].status === 'delivered', 'the replayed delivery');
  expect(received.slice(sentBefore).map((h) => h['webhook-id'])).toEqual([ofAcme[0].webhookId]);

  // replay --failed: the endpoint's dead deliveries (those since --since).
  const none = await run('replay', '--failed', '--endpoint', all.id, '--since', '2099-01-01');
  expect(none).toMatchObject({ code: 0, stdout: `0 dead deliveries of endpoint ${all.id} due again\n` });
  const failed = await run('replay', '--failed', '--endpoint', all.id, '--since', '1h');
  expect(failed).toMatchObject({ code: 0, stderr: '', stdout: `2 dead deliveries of endpoint ${all.id} due again\n` });
  await eventually(async () => (await bus.webhooks.deliveries({ status: 'delivered' })).length === 3, 'every delivery delivered');
});

it('replaying an unknown delivery fails with NOT_FOUND, exit 1', async () => {
  expectOneLineFailure(await run('replay', '999999'), 1, /^situs-event-bus: NOT_FOUND: /);
});

it('an unknown endpoint for --failed is NOT_FOUND too', async () => {
  expectOneLineFailure(await run('replay', '--failed', '--endpoint', '01900000-0000-7000-8000-000000000000'), 1, /^situs-event-bus: NOT_FOUND: /);
});

it("the CLI's bus runs no webhook workers: a due delivery waits while a CLI runs, and goes out once an application bus opens", async () => {
  const own = await postgresStore();
  try {
    healthy = true;
    const publisher = await EventBus.open({ storeUrl: own.url, logger: () => undefined, webhook: { allowHttp: true, allowPrivateNetworks: true, workers: false } });
    await publisher.webhooks.register({ url, events: ['**'] });
    await publisher.publish({ type: 'a.b', payload: 1 });
    await publisher.close();
    const sentBefore = received.length;

    // A long-running CLI (tail) has its bus open well past a webhook poll interval (1 s).
    const tail = new RunningCli(['tail', '--store-url', own.url]);
    await tail.until((r) => r.stderr.includes('(Ctrl-C to stop)'), 'tail to subscribe');
    await new Promise((r) => setTimeout(r, 2500));
    expect((await cli(['webhooks', 'deliveries', '--store-url', own.url])).stdout).toContain('"status":"pending"');
    tail.child.kill('SIGINT');
    expect((await tail.exited).code).toBe(0);
    expect(received.length).toBe(sentBefore);

    const app = await EventBus.open({ storeUrl: own.url, logger: () => undefined, webhook: { allowHttp: true, allowPrivateNetworks: true, pollIntervalMs: 50 } });
    await eventually(() => received.length === sentBefore + 1, 'the delivery, sent by the application bus');
    await app.close();
  } finally {
    await own.drop();
  }
});
