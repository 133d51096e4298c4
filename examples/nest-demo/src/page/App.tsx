import { useEventBusConnection, useEventStream } from '@situs/event-bus/react';
import { usePolled, type Metrics, type Status } from './api';
import { Counters } from './Counters';
import { EventTail } from './EventTail';
import { PluginsPanel } from './PluginsPanel';
import { ProjectsPanel } from './ProjectsPanel';
import { WebhookPanel } from './WebhookPanel';

export function App() {
  const { state } = useEventBusConnection();
  const events = useEventStream('**', { limit: 200 });
  // Every event re-reads the counters at once, besides the steady poll.
  const lastPosition = events[events.length - 1]?.position ?? 0;
  const metrics = usePolled<Metrics>('/metrics', 2000, lastPosition);
  const status = usePolled<Status>('/api/status', 2000, lastPosition);

  return (
    <div className="page">
      <header>
        <div>
          <h1>@situs/event-bus</h1>
          <p className="subtitle">NestJS demo · RealtimeEventsService → durable store → SSE, webhooks, handlers</p>
        </div>
        <span id="connection" className={`pill pill-${state}`} data-state={state}>
          {state === 'open' ? 'live' : state}
        </span>
      </header>
      <Counters metrics={metrics} status={status} />
      <main>
        <ProjectsPanel lastPosition={lastPosition} />
        <EventTail events={events} />
      </main>
      <WebhookPanel lastPosition={lastPosition} verified={status?.receiver.verified} />
      <PluginsPanel lastPosition={lastPosition} />
      <footer>
        <a href="/health">/health</a> terminus · <a href="/metrics">/metrics</a> bus.metrics() ·{' '}
        <a href="/api/events">/api/events</a> @Sse() via RealtimeEventsService.stream() · the tail above reads the Rust SSE
        server (bus.sse.listen)
      </footer>
    </div>
  );
}
