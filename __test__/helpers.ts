import { EventBus, EventBusOptions, LogRecord } from '@situs/event-bus';

/** A bus on the memory store with a logger that records (and keeps the console quiet). */
export async function openBus(options: EventBusOptions = {}): Promise<{ bus: EventBus; logs: LogRecord[] }> {
  const logs: LogRecord[] = [];
  const bus = await EventBus.open({ storeUrl: 'memory:', logger: (r) => logs.push(r), ...options });
  return { bus, logs };
}

/** Resolves once `predicate` holds, polling; deliveries are asynchronous. Bounded, not a timing check. */
export async function until(predicate: () => boolean, what = 'condition'): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (predicate()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Runs `fn` with an environment variable set, restoring it afterwards. */
export async function withEnv(name: string, value: string, fn: () => Promise<void>): Promise<void> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    await fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}
