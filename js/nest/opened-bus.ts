import { EventBus } from '../event-bus';
import { nestLogSink } from './nest-logger';
import { splitOptions, type EventBusModuleOptions } from './options';

/** Injection token of the `OpenedBus` the module shares between its providers. */
export const OPENED_BUS = Symbol('situs:event-bus:opened');

/** The bus, with what the module learnt while opening it. */
export interface OpenedBus {
  bus: EventBus;
  /**
   * The log's last position when the bus opened, before any user code could publish: handlers
   * discovered later subscribe after it, so events published during bootstrap are not lost.
   */
  headPosition: number;
  mapEventType: ((type: string) => string) | undefined;
}

/** Provider factory: opens the bus during bootstrap (a bad option fails it with INVALID_CONFIG). */
export async function openBus(options: EventBusModuleOptions): Promise<OpenedBus> {
  const { busOptions, mapEventType } = splitOptions(options);
  const bus = await EventBus.open({ ...busOptions, logger: busOptions.logger ?? nestLogSink() });
  try {
    return { bus, headPosition: await readHeadPosition(bus), mapEventType };
  } catch (err) {
    await bus.close().catch(() => undefined);
    throw err;
  }
}

/** The log's last position (0 when empty). */
export async function readHeadPosition(bus: EventBus): Promise<number> {
  const { events } = await bus.getEvents({ order: 'desc', limit: 1 });
  return events[0]?.position ?? 0;
}
