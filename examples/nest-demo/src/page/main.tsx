import { EventBusProvider } from '@situs/event-bus/react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { api } from './api';

// The page learns where the Rust SSE server listens (another port) and where to start its tail.
void api<{ sseUrl: string; startAfter: number }>('/api/config').then(({ sseUrl, startAfter }) => {
  createRoot(document.getElementById('root')!).render(
    <EventBusProvider url={sseUrl} lastEventId={startAfter}>
      <App />
    </EventBusProvider>,
  );
});
