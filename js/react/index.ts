// @situs/event-bus/react: one shared SSE connection per <EventBusProvider>, and hooks that read
// events from it, typed by the same EventMap as the server-side API. Nothing here loads the
// native addon: this module runs in browsers.
import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from 'react';
import type { EventFor } from '../types';
import { EventBusClient, type ConnectionInfo, type EventBusClientOptions, type EventFilter } from './client';

export { EventBusClient } from './client';
export type {
  BackoffOptions,
  ConnectionInfo,
  ConnectionState,
  EventBusClientOptions,
  EventFilter,
  EventSourceConstructor,
  EventSourceLike,
} from './client';
export { compilePattern, matchesPattern } from './pattern';
export type { CompiledPattern } from './pattern';
export type { BusEvent, EventFor, EventMap, KnownEventType, MatchingTypes, PayloadOf } from '../types';

const EventBusContext = createContext<EventBusClient | null>(null);
EventBusContext.displayName = 'EventBusContext';

export interface EventBusProviderProps extends EventBusClientOptions {
  children?: ReactNode;
}

/**
 * Opens one EventSource to `url` for everything below it; every hook shares it. The connection
 * is reopened after a backoff when it fails, asking for the events after the last one received,
 * and closed on unmount. Changing `url`, `withCredentials`, `types`, `projectId`, `tenantId`,
 * `lastEventId`, `backoff` or `EventSource` opens a new connection.
 */
export function EventBusProvider(props: EventBusProviderProps): ReactElement {
  const { children, url, withCredentials, types, projectId, tenantId, lastEventId, backoff, EventSource, onReset } = props;
  const [client] = useState(() => new EventBusClient({ url }));
  const onResetRef = useRef(onReset);
  useEffect(() => {
    onResetRef.current = onReset;
  });
  const typesKey = types && types.length > 0 ? types.join(',') : undefined;
  const { initialMs, maxMs, factor } = backoff ?? {};
  useEffect(() => {
    client.configure({
      url,
      withCredentials,
      types: typesKey?.split(','),
      projectId,
      tenantId,
      lastEventId,
      backoff: { initialMs, maxMs, factor },
      EventSource,
      onReset: () => onResetRef.current?.(),
    });
    client.connect();
    return () => client.close();
  }, [client, url, withCredentials, typesKey, projectId, tenantId, lastEventId, initialMs, maxMs, factor, EventSource]);
  return createElement(EventBusContext.Provider, { value: client }, children);
}

/** The provider's shared client (to subscribe outside the hooks). */
export function useEventBusClient(): EventBusClient {
  const client = useContext(EventBusContext);
  if (!client) throw new Error('@situs/event-bus/react: hooks must be used inside <EventBusProvider>');
  return client;
}

/**
 * The payload of the latest event of `typeOrPattern` (and `filter`) received since mount, or
 * `undefined` before the first. Typed by `EventMap`: a declared type gives its payload, a pattern
 * the union of the payloads of the declared types it matches.
 */
export function useEventBus<P extends string>(typeOrPattern: P, filter?: EventFilter): EventFor<P>['payload'] | undefined {
  const client = useEventBusClient();
  const [payload, setPayload] = useState<EventFor<P>['payload'] | undefined>(undefined);
  const projectId = filter?.projectId;
  const tenantId = filter?.tenantId;
  useEffect(() => {
    setPayload(undefined);
    return client.subscribe(typeOrPattern, { projectId, tenantId }, (event) => {
      setPayload(() => event.payload as EventFor<P>['payload']);
    });
  }, [client, typeOrPattern, projectId, tenantId]);
  return payload;
}

export interface EventStreamOptions extends EventFilter {
  /** How many recent events to keep (default 50). */
  limit?: number;
}

/** The recent events matching `pattern` (and the filters) since mount, oldest first, at most `limit`. */
export function useEventStream<P extends string>(pattern: P, options: EventStreamOptions = {}): EventFor<P>[] {
  const client = useEventBusClient();
  const { limit = 50, projectId, tenantId } = options;
  const limitRef = useRef(limit);
  useEffect(() => {
    limitRef.current = limit;
  }, [limit]);
  const [events, setEvents] = useState<EventFor<P>[]>([]);
  useEffect(() => {
    setEvents((current) => (current.length === 0 ? current : []));
    return client.subscribe(pattern, { projectId, tenantId }, (event) => {
      setEvents((current) => {
        const keep = Math.max(0, limitRef.current);
        const next = [...current, event as EventFor<P>];
        return next.length > keep ? next.slice(next.length - keep) : next;
      });
    });
  }, [client, pattern, projectId, tenantId]);
  // A lowered limit applies at once, not only from the next event.
  return useMemo(() => (events.length > limit ? events.slice(events.length - Math.max(0, limit)) : events), [events, limit]);
}

/** The shared connection's state, last event id and reset count. */
export function useEventBusConnection(): ConnectionInfo {
  const client = useEventBusClient();
  return useSyncExternalStore(client.watchConnection, client.getConnection, client.getConnection);
}
