/**
 * @jest-environment ./__test__/react/jsdom-env.js
 */
// The React hooks against the real SSE server: the bus runs in a child process (the native addon
// does not load under jsdom), the page side is jsdom + npm `eventsource`.
import { cleanup, configure, render, screen, waitFor } from '@testing-library/react';
import { StrictMode, type ReactNode } from 'react';
import { EventSource } from 'eventsource';
import {
  EventBusProvider,
  useEventBus,
  useEventBusClient,
  useEventBusConnection,
  useEventStream,
  type EventBusProviderProps,
} from '@situs/event-bus/react';
import { BusProcess, eventually } from './bus-process';

jest.setTimeout(30_000);
configure({ asyncUtilTimeout: 5_000 });

/** The EventSource the provider uses, recording every URL it opens. */
const opened: string[] = [];
const openedAt: number[] = [];
const inits: ({ withCredentials?: boolean } | undefined)[] = [];
class RecordingEventSource extends EventSource {
  constructor(url: string, init?: { withCredentials?: boolean }) {
    opened.push(url);
    openedAt.push(Date.now());
    inits.push(init);
    super(url, init);
  }
}

let busProcess: BusProcess;
let url: string;

beforeAll(async () => {
  // Events arrive from a real server at any moment, not from inside act(): React is told this is
  // not an act() environment (RTL still wraps its own render/unmount in act), and tests wait for
  // the DOM with waitFor.
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
  busProcess = await BusProcess.start();
  url = await busProcess.listen();
});

afterAll(async () => {
  await busProcess.stop();
});

afterEach(async () => {
  cleanup();
  await eventually(async () => (await busProcess.sseConnections()) === 0, 'the server to see no connection');
  opened.length = 0;
  openedAt.length = 0;
  inits.length = 0;
});

function Latest({ pattern, projectId }: { pattern: string; projectId?: string }) {
  const payload = useEventBus(pattern, projectId === undefined ? undefined : { projectId });
  return <output data-testid={`latest:${pattern}:${projectId ?? ''}`}>{payload === undefined ? 'none' : JSON.stringify(payload)}</output>;
}

function Stream({ pattern, limit, testId }: { pattern: string; limit?: number; testId: string }) {
  const events = useEventStream(pattern, { limit });
  return (
    <ol data-testid={testId}>
      {events.map((e) => (
        <li key={e.id}>{`${e.position} ${e.type} ${JSON.stringify(e.payload)}`}</li>
      ))}
    </ol>
  );
}

function Connection() {
  const { state, lastEventId, resets, retries } = useEventBusConnection();
  return <output data-testid="connection" data-state={state} data-last={lastEventId ?? ''} data-resets={resets} data-retries={retries} />;
}

function renderWithBus(children: ReactNode, props: Partial<EventBusProviderProps> = {}) {
  return render(
    <EventBusProvider url={url} EventSource={RecordingEventSource} {...props}>
      <Connection />
      {children}
    </EventBusProvider>,
  );
}

const connection = (): HTMLElement => screen.getByTestId('connection');
const items = (testId: string): string[] =>
  Array.from(screen.getByTestId(testId).querySelectorAll('li')).map((li) => li.textContent ?? '');

/** Waits until the provider is open and the server counts `n` connections (so publishes reach it). */
async function connected(n = 1): Promise<void> {
  await waitFor(() => expect(connection().dataset.state).toBe('open'));
  await eventually(async () => (await busProcess.sseConnections()) === n, `${n} server connection(s)`);
}

test('useEventBus shows the payload of an event published from Node', async () => {
  renderWithBus(<Latest pattern="project.created" />);
  expect(screen.getByTestId('latest:project.created:').textContent).toBe('none');
  await connected();

  const [event] = await busProcess.publish({ type: 'project.created', payload: { name: 'Apollo' }, projectId: 'p1' });
  await waitFor(() => expect(screen.getByTestId('latest:project.created:').textContent).toBe('{"name":"Apollo"}'));
  expect(connection().dataset.last).toBe(String(event.position));

  await busProcess.publish({ type: 'project.created', payload: { name: 'Gemini' } });
  await waitFor(() => expect(screen.getByTestId('latest:project.created:').textContent).toBe('{"name":"Gemini"}'));
});

test('patterns select the types: * one segment, ** the rest', async () => {
  renderWithBus(
    <>
      <Stream pattern="project.*" testId="one" />
      <Stream pattern="project.**" testId="tail" />
      <Stream pattern="*.deleted" testId="deleted" />
    </>,
  );
  await connected();
  await busProcess.publish(
    { type: 'project.created', payload: 1 },
    { type: 'user.created', payload: 2 },
    { type: 'project.member.added', payload: 3 },
    { type: 'user.deleted', payload: 4 },
    { type: 'project.deleted', payload: 5 },
  );
  await waitFor(() => expect(items('tail')).toHaveLength(3));
  const types = (testId: string) => items(testId).map((text) => text.split(' ')[1]);
  expect(types('one')).toEqual(['project.created', 'project.deleted']);
  expect(types('tail')).toEqual(['project.created', 'project.member.added', 'project.deleted']);
  expect(types('deleted')).toEqual(['user.deleted', 'project.deleted']);
});

test('a projectId filter keeps other projects out', async () => {
  renderWithBus(
    <>
      <Latest pattern="project.*" projectId="p1" />
      <Latest pattern="project.*" projectId="p2" />
    </>,
  );
  await connected();
  await busProcess.publish(
    { type: 'project.updated', payload: { v: 'p1-a' }, projectId: 'p1' },
    { type: 'project.updated', payload: { v: 'p2-a' }, projectId: 'p2' },
    { type: 'project.updated', payload: { v: 'none' } },
  );
  await waitFor(() => expect(screen.getByTestId('latest:project.*:p2').textContent).toBe('{"v":"p2-a"}'));
  await busProcess.publish({ type: 'project.updated', payload: { v: 'p2-b' }, projectId: 'p2' });
  await waitFor(() => expect(screen.getByTestId('latest:project.*:p2').textContent).toBe('{"v":"p2-b"}'));
  expect(screen.getByTestId('latest:project.*:p1').textContent).toBe('{"v":"p1-a"}');
});

test('useEventStream keeps the last `limit` events, oldest first', async () => {
  renderWithBus(<Stream pattern="clock.tick" limit={3} testId="ticks" />);
  await connected();
  const published = await busProcess.publish(...[1, 2, 3, 4, 5].map((n) => ({ type: 'clock.tick', payload: n })));
  await waitFor(() => expect(items('ticks')[2]).toMatch(/ clock.tick 5$/));
  expect(items('ticks')).toEqual(published.slice(2).map((e) => `${e.position} clock.tick ${e.payload}`));
});

test('every hook under one provider shares one connection, closed on unmount', async () => {
  const view = renderWithBus(
    <>
      <Latest pattern="project.created" />
      <Latest pattern="user.*" />
      <Stream pattern="**" testId="all" />
    </>,
  );
  await connected(1);
  await busProcess.publish({ type: 'project.created', payload: 'p' }, { type: 'user.updated', payload: 'u' });
  await waitFor(() => expect(items('all')).toHaveLength(2));
  expect(screen.getByTestId('latest:project.created:').textContent).toBe('"p"');
  expect(screen.getByTestId('latest:user.*:').textContent).toBe('"u"');
  expect(await busProcess.sseConnections()).toBe(1);
  expect(opened).toHaveLength(1);

  view.unmount();
  await eventually(async () => (await busProcess.sseConnections()) === 0, 'the connection to close on unmount');
});

test('hooks that unmount unsubscribe; the provider keeps its one connection', async () => {
  let client: ReturnType<typeof useEventBusClient> | undefined;
  function Probe() {
    client = useEventBusClient();
    return null;
  }
  const tree = (show: boolean) => (
    <EventBusProvider url={url} EventSource={RecordingEventSource}>
      <Connection />
      <Probe />
      {show && (
        <>
          <Latest pattern="a.b" />
          <Stream pattern="a.*" testId="as" />
        </>
      )}
    </EventBusProvider>
  );
  const view = render(tree(true));
  await connected(1);
  expect(client!.subscriberCount).toBe(2);
  view.rerender(tree(false));
  expect(client!.subscriberCount).toBe(0);
  view.rerender(tree(true));
  expect(client!.subscriberCount).toBe(2);
  await busProcess.publish({ type: 'a.b', payload: 'again' });
  await waitFor(() => expect(items('as')).toHaveLength(1));
  expect(await busProcess.sseConnections()).toBe(1);
  expect(opened).toHaveLength(1);
});

test('under StrictMode (effects run twice) a provider still holds one connection', async () => {
  render(
    <StrictMode>
      <EventBusProvider url={url} EventSource={RecordingEventSource} withCredentials>
        <Connection />
        <Latest pattern="a.b" />
      </EventBusProvider>
    </StrictMode>,
  );
  await connected(1);
  await busProcess.publish({ type: 'a.b', payload: 'once' });
  await waitFor(() => expect(screen.getByTestId('latest:a.b:').textContent).toBe('"once"'));
  expect(await busProcess.sseConnections()).toBe(1);
  expect(inits.every((init) => init?.withCredentials === true)).toBe(true);
});

test('two providers open two connections', async () => {
  render(
    <>
      <EventBusProvider url={url} EventSource={RecordingEventSource}>
        <Latest pattern="a.b" />
      </EventBusProvider>
      <EventBusProvider url={url} EventSource={RecordingEventSource}>
        <Latest pattern="a.*" />
      </EventBusProvider>
    </>,
  );
  await eventually(async () => (await busProcess.sseConnections()) === 2, 'two connections');
  await busProcess.publish({ type: 'a.b', payload: 1 });
  await waitFor(() => expect(screen.getByTestId('latest:a.*:').textContent).toBe('1'));
  expect(screen.getByTestId('latest:a.b:').textContent).toBe('1');
});

test('after the server goes away and comes back, it reconnects with the last id and misses nothing', async () => {
  renderWithBus(<Stream pattern="job.*" testId="jobs" />, { backoff: { initialMs: 100, maxMs: 400 } });
  await connected();
  const [first] = await busProcess.publish({ type: 'job.started', payload: 1 });
  await waitFor(() => expect(items('jobs')).toHaveLength(1));

  const port = Number(new URL(url).port);
  await busProcess.closeServer();
  await waitFor(() => expect(connection().dataset.state).toBe('reconnecting'));
  const missed = await busProcess.publish({ type: 'job.progress', payload: 2 }, { type: 'job.done', payload: 3 });
  // Retries fail while nothing listens; the backoff grows but stays within maxMs.
  await waitFor(() => expect(Number(connection().dataset.retries)).toBeGreaterThanOrEqual(2));

  const again = await busProcess.listen({ port });
  expect(again).toBe(url);
  await waitFor(() => expect(items('jobs')).toHaveLength(3));
  expect(connection().dataset.state).toBe('open');
  expect(items('jobs')).toEqual([first, ...missed].map((e) => `${e.position} ${e.type} ${e.payload}`));
  // Every reconnect asked for the events after the last one received.
  expect(opened.length).toBeGreaterThanOrEqual(3);
  for (const reconnect of opened.slice(1)) {
    expect(new URL(reconnect).searchParams.get('lastEventId')).toBe(String(first.position));
  }
  expect(new URL(opened[0]).searchParams.get('lastEventId')).toBeNull();
  expect(connection().dataset.last).toBe(String(missed[1].position));

  // And it carries on live.
  const [later] = await busProcess.publish({ type: 'job.started', payload: 4 });
  await waitFor(() => expect(items('jobs')).toHaveLength(4));
  expect(items('jobs')[3]).toBe(`${later.position} job.started 4`);
});

test('unmounting while a reconnect is pending clears its timer', async () => {
  const pending = new Map<unknown, number>();
  const realSetTimeout = globalThis.setTimeout;
  const realClearTimeout = globalThis.clearTimeout;
  const tracked = ((fn: () => void, ms?: number, ...rest: unknown[]) => {
    const handle: unknown = realSetTimeout(
      () => {
        pending.delete(handle);
        fn();
      },
      ms,
      ...rest,
    );
    pending.set(handle, ms ?? 0);
    return handle;
  }) as unknown as typeof setTimeout;
  globalThis.setTimeout = tracked;
  globalThis.clearTimeout = ((handle: unknown) => {
    pending.delete(handle);
    realClearTimeout(handle as number);
  }) as typeof clearTimeout;
  try {
    const view = renderWithBus(<Latest pattern="x.y" />, { backoff: { initialMs: 5_000, maxMs: 5_000 } });
    await connected();
    const port = Number(new URL(url).port);
    await busProcess.closeServer();
    try {
      await waitFor(() => expect(connection().dataset.state).toBe('reconnecting'));
      const long = () => [...pending.values()].filter((ms) => ms >= 1_000);
      expect(long().length).toBeGreaterThanOrEqual(1); // the 5 s backoff
      view.unmount();
      expect(long()).toEqual([]);
    } finally {
      await busProcess.listen({ port });
    }
  } finally {
    globalThis.setTimeout = realSetTimeout;
    globalThis.clearTimeout = realClearTimeout;
  }
});

test('the server-side filters of the provider (types, projectId, tenantId) narrow the stream', async () => {
  renderWithBus(<Stream pattern="**" testId="all" />, { types: ['order.*'], projectId: 'p9', tenantId: 't1' });
  await connected();
  const published = await busProcess.publish(
    { type: 'order.placed', payload: 1, projectId: 'p1', tenantId: 't1' },
    { type: 'invoice.paid', payload: 2, projectId: 'p9', tenantId: 't1' },
    { type: 'order.placed', payload: 3, projectId: 'p9', tenantId: 't2' },
    { type: 'order.placed', payload: 4, projectId: 'p9', tenantId: 't1' },
  );
  const kept = published[3];
  await waitFor(() => expect(items('all')).toHaveLength(1));
  expect(items('all')).toEqual([`${kept.position} order.placed 4`]);
  const query = new URL(opened[0]).searchParams;
  expect(query.get('types')).toBe('order.*');
  expect(query.get('projectId')).toBe('p9');
  expect(query.get('tenantId')).toBe('t1');
  expect(query.get('format')).toBe('message');
});

test('a provider given lastEventId starts with the events after it', async () => {
  const [a, b, c] = await busProcess.publish(
    { type: 'log.line', payload: 'a' },
    { type: 'log.line', payload: 'b' },
    { type: 'log.line', payload: 'c' },
  );
  renderWithBus(<Stream pattern="log.*" testId="log" />, { lastEventId: a.position });
  await waitFor(() => expect(items('log')).toHaveLength(2));
  expect(items('log')).toEqual([b, c].map((e) => `${e.position} log.line "${e.payload}"`));
});

describe('against a server with an authorize hook', () => {
  let guarded: BusProcess;
  let guardedUrl: string;

  beforeAll(async () => {
    guarded = await BusProcess.start();
    guardedUrl = await guarded.listen({ auth: true });
  });

  afterAll(async () => {
    await guarded.stop();
  });

  afterEach(async () => {
    cleanup();
    await eventually(async () => (await guarded.sseConnections()) === 0, 'no connection left');
  });

  test('a refused connection (401) is retried with a growing backoff until it is let in', async () => {
    render(
      <EventBusProvider url={`${guardedUrl}?token=bad`} EventSource={RecordingEventSource} backoff={{ initialMs: 50, maxMs: 200 }}>
        <Connection />
        <Latest pattern="a.b" />
      </EventBusProvider>,
    );
    await waitFor(() => expect(Number(connection().dataset.retries)).toBeGreaterThanOrEqual(4));
    expect(connection().dataset.state).toBe('reconnecting');
    expect((await guarded.metrics()).authorizeCalls).toBeGreaterThanOrEqual(4);
    // The app's own query parameters are kept on every attempt.
    expect(opened.every((u) => new URL(u).searchParams.get('token') === 'bad')).toBe(true);
    // Each wait is at least the backoff's lower bound (50, 100, 200, 200 ms, -20% jitter).
    for (let i = 1; i < 4; i++) {
      expect(openedAt[i] - openedAt[i - 1]).toBeGreaterThanOrEqual(0.8 * Math.min(200, 50 * 2 ** (i - 1)) - 5);
    }

    await guarded.allow();
    await waitFor(() => expect(connection().dataset.state).toBe('open'));
    await eventually(async () => (await guarded.sseConnections()) === 1, 'the connection');
    await guarded.publish({ type: 'a.b', payload: 'in' });
    await waitFor(() => expect(screen.getByTestId('latest:a.b:').textContent).toBe('"in"'));
    expect(connection().dataset.retries).toBe('0');
  });

  test('a last id older than the log holds gets a reset: onReset runs, then live events flow', async () => {
    const [old] = await guarded.publish({ type: 'doc.saved', payload: 1 }, { type: 'doc.saved', payload: 2 });
    await guarded.archive();
    await guarded.publish({ type: 'doc.saved', payload: 3 }); // the oldest the log still holds
    const onReset = jest.fn();
    render(
      <EventBusProvider url={`${guardedUrl}?token=good`} EventSource={RecordingEventSource} lastEventId={old.position} onReset={onReset}>
        <Connection />
        <Stream pattern="doc.*" testId="docs" />
      </EventBusProvider>,
    );
    await waitFor(() => expect(connection().dataset.resets).toBe('1'));
    expect(onReset).toHaveBeenCalledTimes(1);
    expect((await guarded.metrics()).sseResets).toBe(1);
    const [live] = await guarded.publish({ type: 'doc.saved', payload: 4 });
    await waitFor(() => expect(items('docs')).toHaveLength(1));
    expect(items('docs')).toEqual([`${live.position} doc.saved 4`]);
  });
});

test('hooks outside a provider fail with a clear message', () => {
  const spy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    expect(() => render(<Latest pattern="a.b" />)).toThrow(/inside <EventBusProvider>/);
  } finally {
    spy.mockRestore();
  }
});
