import { useEffect, useState } from 'react';

export interface Project {
  id: string;
  name: string;
  status: string;
  updatedAt: string;
}

export interface Delivery {
  id: number;
  eventType: string | null;
  webhookId: string | null;
  position: number;
  status: 'pending' | 'retrying' | 'delivered' | 'dead';
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  updatedAt: string;
}

export interface Metrics {
  published: number;
  delivered: number;
  webhooksDelivered: number;
  webhookFailures: number;
  sseConnections: number;
}

export interface PluginsView {
  installed: Array<{ name: string; version: string; handlers: number; middleware: boolean }>;
  activity: Record<string, { type: string; position: number }>;
}

export interface Status {
  audit: { total: number; byType: Record<string, number> };
  receiver: { verified: number; rejected: number };
}

export async function api<T>(path: string, init?: { method: string; body?: unknown }): Promise<T> {
  const response = await fetch(path, {
    method: init?.method ?? 'GET',
    headers: init?.body === undefined ? undefined : { 'content-type': 'application/json' },
    body: init?.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: ${response.status}`);
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Reads `path` now and every `everyMs`; `bump` forces an early re-read (e.g. after an event). */
export function usePolled<T>(path: string, everyMs: number, bump: unknown = 0): T | undefined {
  const [value, setValue] = useState<T>();
  useEffect(() => {
    let live = true;
    const read = (): void => {
      api<T>(path).then((v) => live && setValue(v), () => undefined);
    };
    read();
    const timer = setInterval(read, everyMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [path, everyMs, bump]);
  return value;
}
