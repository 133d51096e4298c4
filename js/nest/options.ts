import { EventBusError } from '../errors';
import type { EventBusOptions } from '../types';

/**
 * Options of `EventBusModule.forRoot` / `forRootAsync`: the bus's own `EventBusOptions` plus the
 * module's. Without `logger`, the bus's log records go to Nest's `Logger` (context `EventBus`).
 */
export interface EventBusModuleOptions extends EventBusOptions {
  /**
   * How `RealtimeEventsService.publish` turns a legacy name (`PROJECT_CREATED`) into a dot type.
   * Default: `legacyEventType` (compose with it to keep the default for other names).
   */
  mapEventType?: (type: string) => string;
}

/** The module-only keys, removed before the rest goes to `EventBus.open`. */
export function splitOptions(options: EventBusModuleOptions): {
  busOptions: EventBusOptions;
  mapEventType: ((type: string) => string) | undefined;
} {
  if (options === null || typeof options !== 'object') {
    throw new EventBusError('INVALID_CONFIG', 'EventBusModule options must be an object');
  }
  const { mapEventType, ...busOptions } = options;
  if (mapEventType !== undefined && typeof mapEventType !== 'function') {
    throw new EventBusError('INVALID_CONFIG', 'option mapEventType must be a function');
  }
  return { busOptions, mapEventType };
}
