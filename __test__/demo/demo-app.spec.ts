// The demo booted with supertest: REST publish → SSE clients receive it → the webhook receiver
// verified its signature → /health up, and the rest of what the page reads.
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { eventually } from '../../examples/nest-demo/src/smoke';
import { SseClient, type SseMessage } from '../../examples/nest-demo/src/sse-client';
import { bootDemo, type BootedDemo } from './boot-demo';

jest.setTimeout(60_000);

let booted: BootedDemo;
let http: ReturnType<typeof request>;
const clients: SseClient[] = [];

beforeAll(async () => {
  booted = await bootDemo();
  http = request(booted.demo.app.getHttpServer());
});

afterAll(async () => {
  for (const c of clients) c.close();
  await booted?.stop();
});

async function sse(url: string): Promise<SseClient> {
  const client = await SseClient.open(url);
  clients.push(client);
  return client;
}

const ofProject = (type: string, projectId: string) => (m: SseMessage): boolean =>
  m.event === type && (JSON.parse(m.data) as { projectId?: string }).projectId === projectId;

test('REST create → @Sse() and Rust SSE clients get it → the receiver verified the webhook → /health up → metrics counted it', async () => {
  const { demo } = booted;
  const nestStream = await sse(`${demo.url}/api/events?types=project.*`);
  const rustStream = await sse(`${demo.sseUrl}?types=project.**`);

  const created = await http.post('/api/projects').send({ name: 'Apollo' }).expect(201);
  const projectId = created.body.id as string;
  expect(created.body).toMatchObject({ name: 'Apollo', status: 'draft' });

  const message = await nestStream.waitFor(ofProject('project.created', projectId));
  const event = JSON.parse(message.data) as { id: string; position: number; payload: { name: string } };
  // The legacy name PROJECT_CREATED was mapped, and projectId was taken from the payload.
  expect(event.payload.name).toBe('Apollo');
  expect(message.id).toBe(String(event.position));
  const fromRust = await rustStream.waitFor(ofProject('project.created', projectId));
  expect(JSON.parse(fromRust.data).id).toBe(event.id);

  const status = await eventually(
    async () => (await http.get('/api/status').expect(200)).body as { receiver: { recent: Array<{ eventId: string; verified: boolean; webhookId: string }> } },
    (s) => s.receiver.recent.some((r) => r.eventId === event.id && r.verified),
    'the receiver to verify the delivery',
  );
  const received = status.receiver.recent.find((r) => r.eventId === event.id)!;
  expect(received.webhookId).toMatch(/^msg_/);

  const deliveries = (await http.get('/api/webhooks/deliveries').expect(200)).body as Array<{ eventId: string; status: string; webhookId: string; endpointId: string }>;
  expect(deliveries.find((d) => d.eventId === event.id)).toMatchObject({ status: 'delivered', webhookId: received.webhookId, endpointId: demo.webhookEndpointId });

  const health = await http.get('/health').expect(200);
  expect(health.body).toMatchObject({ status: 'ok', info: { eventBus: { status: 'up' } } });

  const metrics = (await http.get('/metrics').expect(200)).body as Record<string, number>;
  expect(metrics.published).toBeGreaterThanOrEqual(1);
  expect(metrics.webhooksDelivered).toBeGreaterThanOrEqual(1);
  expect(metrics.sseConnections).toBeGreaterThanOrEqual(2);
});

test('update and delete publish project.updated, project.status_changed and project.deleted; the audit handler counts them', async () => {
  const stream = await sse(`${booted.demo.url}/api/events?types=project.**`);
  const { body: project } = await http.post('/api/projects').send({ name: 'Gemini' }).expect(201);
  const before = (await http.get('/api/status').expect(200)).body.audit.byType as Record<string, number>;

  await http.patch(`/api/projects/${project.id}`).send({ status: 'live' }).expect(200);
  const changed = await stream.waitFor(ofProject('project.status_changed', project.id));
  expect(JSON.parse(changed.data).payload).toMatchObject({ from: 'draft', to: 'live' });
  await stream.waitFor(ofProject('project.updated', project.id));

  await http.delete(`/api/projects/${project.id}`).expect(204);
  await stream.waitFor(ofProject('project.deleted', project.id));
  expect((await http.get('/api/projects').expect(200)).body.map((p: { id: string }) => p.id)).not.toContain(project.id);

  // @OnBusEvent('project.**') saw each of them (handlers run after the commit, so poll).
  await eventually(
    async () => (await http.get('/api/status').expect(200)).body.audit.byType as Record<string, number>,
    (after) => ['project.updated', 'project.status_changed', 'project.deleted'].every((t) => (after[t] ?? 0) === (before[t] ?? 0) + 1),
    'the audit handler to count the three events',
  );
});

test('bad input is refused: an empty name is 400, an unknown project 404', async () => {
  await http.post('/api/projects').send({ name: '  ' }).expect(400);
  await http.patch('/api/projects/p-nope').send({ status: 'live' }).expect(404);
  await http.delete('/api/projects/p-nope').expect(404);
});

test('the webhook receiver refuses a request signed with another secret', async () => {
  const body = JSON.stringify({ id: 'forged', type: 'project.created', payload: {} });
  const forger = new Webhook(`whsec_${Buffer.from('not the endpoint secret, 32 bytes').toString('base64')}`);
  const webhookId = 'msg_forged';
  const timestamp = new Date();
  const signature = forger.sign(webhookId, timestamp, body);
  await http
    .post('/webhooks/receiver')
    .set('content-type', 'application/json')
    .set('webhook-id', webhookId)
    .set('webhook-timestamp', String(Math.floor(timestamp.getTime() / 1000)))
    .set('webhook-signature', signature)
    .send(body)
    .expect(401);
  const { receiver } = (await http.get('/api/status').expect(200)).body;
  expect(receiver.rejected).toBeGreaterThanOrEqual(1);
  expect(receiver.recent[0]).toMatchObject({ webhookId, verified: false });
});

test('the page, its config and the metrics are served', async () => {
  const page = await http.get('/').expect(200);
  expect(page.text).toContain('<script src="/app.js"></script>');
  const config = (await http.get('/api/config').expect(200)).body;
  expect(config.sseUrl).toBe(booted.demo.sseUrl);
  expect(config.startAfter).toBeGreaterThanOrEqual(0);
});
