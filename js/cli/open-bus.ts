// The bus an operator command works on: the store from --store-url or EVENT_STORE_URL (never the
// package's sqlite default, which would create ./event-bus.db wherever the CLI runs), webhook
// workers off (an ops tool must not start delivering webhooks), no retention.
import { EventBus } from '../index';
import type { LogLevel, LogRecord } from '../index';
import { UsageError } from './failure';
import { note } from './output';
import { redact } from './redact';

/** The options every command has (set on the program, read with `optsWithGlobals()`). */
export interface GlobalOptions {
  storeUrl?: string;
  verbose?: boolean;
}

export function storeUrlOf(globals: GlobalOptions): string {
  const url = globals.storeUrl?.trim();
  if (!url) throw new UsageError('no store URL: pass --store-url URL or set EVENT_STORE_URL');
  return url;
}

function formatRecord(record: LogRecord, storeUrl: string): string {
  const fields = record.fields && Object.keys(record.fields).length > 0 ? ` ${JSON.stringify(record.fields)}` : '';
  return redact(`[event-bus] ${record.level}: ${record.message}${fields}`, storeUrl);
}

/**
 * Opens the bus, runs `work` with it and closes it, whatever happens. Log records from the core
 * (warnings and errors; everything with --verbose) go to stderr, but only once the bus is open:
 * when opening fails, its error alone is reported.
 */
export async function withBus<T>(globals: GlobalOptions, work: (bus: EventBus, storeUrl: string) => Promise<T>): Promise<T> {
  const storeUrl = storeUrlOf(globals);
  let held: LogRecord[] | null = [];
  const logger = (record: LogRecord): void => {
    if (held) held.push(record);
    else note(formatRecord(record, storeUrl));
  };
  const logLevel: LogLevel = globals.verbose ? 'debug' : 'warn';
  const bus = await EventBus.open({ storeUrl, webhook: { workers: false }, logger, logLevel });
  for (const record of held) note(formatRecord(record, storeUrl));
  held = null;
  let result: T;
  try {
    result = await work(bus, storeUrl);
  } catch (err) {
    // The work's error is the one to report, not a failure to close after it.
    await bus.close().catch(() => undefined);
    throw err;
  }
  await bus.close();
  return result;
}
