// Type-level tests of @situs/event-bus/react (tsc only). The EventMap declared in
// event-map.test-d.ts (same program) types the hooks as it types the server API. This program has
// no DOM lib: the subpath's typings must not need one.
import { createElement } from 'react';
import {
  EventBusProvider,
  useEventBus,
  useEventBusConnection,
  useEventStream,
  type ConnectionState,
  type EventSourceConstructor,
} from '@situs/event-bus/react';
import { EventSource as NodeEventSource } from 'eventsource';

function hooks(): void {
  const paid = useEventBus('invoice.paid');
  if (paid) {
    const amount: number = paid.amount;
    void amount;
  }
  // @ts-expect-error the payload may be undefined before the first event
  void paid.amount;

  const invoice = useEventBus('invoice.*', { projectId: 'p1' });
  if (invoice && 'reason' in invoice) {
    const reason: string = invoice.reason;
    void reason;
  }
  // @ts-expect-error `amount` exists only on invoice.paid
  void invoice?.amount;

  // Undeclared types give unknown payloads.
  const other = useEventBus('user.logged_in');
  // @ts-expect-error unknown must be narrowed
  void other.name;

  const events = useEventStream('invoice.**', { limit: 10, tenantId: 't' });
  for (const e of events) {
    if (e.type === 'invoice.voided') {
      const reason: string = e.payload.reason;
      void reason;
    } else {
      const amount: number = e.payload.amount;
      const when: Date = e.timestamp;
      const position: number = e.position;
      void [amount, when, position];
    }
  }
  // @ts-expect-error unknown option
  useEventStream('a.b', { max: 3 });
  // @ts-expect-error filters are projectId / tenantId
  useEventBus('a.b', { userId: 'u' });

  const { state, lastEventId, resets } = useEventBusConnection();
  const s: ConnectionState = state;
  const id: string | null = lastEventId;
  const n: number = resets;
  void [s, id, n];
  // @ts-expect-error not a state
  const bad: typeof state = 'connected';
  void bad;
}

function provider(): void {
  // npm `eventsource` (and the browser's EventSource) fit the EventSource prop.
  const Impl: EventSourceConstructor = NodeEventSource;
  createElement(EventBusProvider, { url: '/events', withCredentials: true, EventSource: Impl, onReset: () => undefined });
  createElement(EventBusProvider, { url: '/events', types: ['project.*'], projectId: 'p1', backoff: { initialMs: 100 } });
  // @ts-expect-error url is required
  createElement(EventBusProvider, { withCredentials: true });
}

void [hooks, provider];
