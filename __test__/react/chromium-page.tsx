// The page of the Chromium test: bundled with esbuild, it renders a component using the hooks
// against the SSE server named in its query string (?sse=URL).
import { createRoot } from 'react-dom/client';
import { EventBusProvider, useEventBus, useEventBusConnection, useEventStream } from '@situs/event-bus/react';

function ProjectBanner() {
  const project = useEventBus('project.created') as { name?: string } | undefined;
  return <h1 id="latest">{project?.name ?? 'no project yet'}</h1>;
}

function Feed() {
  const events = useEventStream('project.**', { limit: 5 });
  return (
    <ul id="feed">
      {events.map((e) => (
        <li key={e.id}>{`${e.position} ${e.type}`}</li>
      ))}
    </ul>
  );
}

function Status() {
  const { state, lastEventId } = useEventBusConnection();
  return <p id="status" data-state={state}>{`${state} ${lastEventId ?? '-'}`}</p>;
}

const sse = new URLSearchParams(window.location.search).get('sse');
if (!sse) throw new Error('the page needs ?sse=URL');
createRoot(document.getElementById('root')!).render(
  <EventBusProvider url={sse}>
    <Status />
    <ProjectBanner />
    <Feed />
  </EventBusProvider>,
);
