// tail: a running CLI follows what this test process publishes, until a signal.
import { EventBus } from '@situs/event-bus';
import { postgresStore } from '../stores';
import { jsonLines, RunningCli } from './run-cli';

jest.setTimeout(120_000);

let store: Awaited<ReturnType<typeof postgresStore>>;
let bus: EventBus;
beforeAll(async () => {
  store = await postgresStore();
  bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined });
});
afterAll(async () => {
  await bus.close();
  await store.drop();
});

const running: RunningCli[] = [];
afterEach(() => {
  for (const run of running.splice(0)) if (run.child.exitCode === null) run.child.kill('SIGKILL');
});

function tail(...args: string[]): RunningCli {
  const run = new RunningCli(['tail', '--store-url', store.url, ...args]);
  running.push(run);
  return run;
}

const ready = (run: RunningCli) => run.until((r) => r.stderr.includes('(Ctrl-C to stop)'), 'tail to subscribe');
const lineCount = (n: number) => (r: RunningCli) => r.stdout.split('\n').filter((l) => l !== '').length >= n;

it('prints live events matching --type and --project as JSON lines; SIGINT closes it with exit 0', async () => {
  await bus.publish({ type: 'order.placed', payload: 'before the tail started', projectId: 'p1' });
  const run = tail('--type', 'order.*', '--type', 'invoice.paid', '--project', 'p1');
  await ready(run);
  expect(run.stderr).toBe('tailing order.*, invoice.paid from now (Ctrl-C to stop)\n');
  const published = [];
  published.push(await bus.publish({ type: 'order.placed', payload: { n: 1 }, projectId: 'p1', tenantId: 't1' }));
  await bus.publish({ type: 'order.placed', payload: 'other project', projectId: 'p2' });
  await bus.publish({ type: 'user.created', payload: 'other type', projectId: 'p1' });
  published.push(await bus.publish({ type: 'invoice.paid', payload: { n: 2 }, projectId: 'p1' }));
  published.push(await bus.publish({ type: 'order.shipped', payload: { n: 3 }, projectId: 'p1' }));
  await run.until(lineCount(3), 'three events');

  run.child.kill('SIGINT');
  const result = await run.exited;
  expect({ code: result.code, signal: result.signal }).toEqual({ code: 0, signal: null });
  const lines = jsonLines(result.stdout);
  expect(lines).toEqual(
    published.map((e) => ({
      id: e.id,
      type: e.type,
      payload: e.payload,
      projectId: 'p1',
      ...(e.tenantId ? { tenantId: e.tenantId } : {}),
      position: e.position,
      timestamp: e.timestamp.toISOString(),
    })),
  );
  expect(result.stderr).toBe('tailing order.*, invoice.paid from now (Ctrl-C to stop)\n');
});

it('--tenant narrows to one tenant; every type by default; SIGTERM exits 0 too', async () => {
  const run = tail('--tenant', 'acme');
  await ready(run);
  expect(run.stderr).toContain('tailing ** from now');
  await bus.publish({ type: 'a.b', payload: 1, tenantId: 'other' });
  const mine = await bus.publish({ type: 'x.y.z', payload: 2, tenantId: 'acme' });
  await run.until(lineCount(1), 'the tenant event');
  run.child.kill('SIGTERM');
  const result = await run.exited;
  expect(result.code).toBe(0);
  expect(jsonLines(result.stdout).map((e) => e.id)).toEqual([mine.id]);
});

it('--from a position replays the stored events after it, then follows live ones', async () => {
  const first = await bus.publish({ type: 'replay.me', payload: 1 });
  const second = await bus.publish({ type: 'replay.me', payload: 2 });
  const run = tail('--type', 'replay.*', '--from', String(first.position));
  await run.until(lineCount(1), 'the replayed event');
  expect(run.stderr).toContain(`tailing replay.* after position ${first.position}`);
  const live = await bus.publish({ type: 'replay.me', payload: 3 });
  await run.until(lineCount(2), 'the live event');
  run.child.kill('SIGINT');
  const result = await run.exited;
  expect(result.code).toBe(0);
  expect(jsonLines(result.stdout).map((e) => e.position)).toEqual([second.position, live.position]);
});

it('--from beginning replays the whole log', async () => {
  const run = tail('--type', 'replay.*', '--from', 'beginning');
  await run.until(lineCount(3), 'the stored replay.* events');
  run.child.kill('SIGINT');
  const result = await run.exited;
  expect(result.code).toBe(0);
  expect(jsonLines(result.stdout).map((e) => e.payload)).toEqual([1, 2, 3]);
});
