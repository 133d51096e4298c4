import { EventBusError } from '../../errors';
import type { PublishInput } from '../../types';
import { routingFields } from '../routing-fields';
import { eventTypeOf } from './event-type';

/**
 * What the bus stores for a cqrs event: the type of its class (`eventTypeOf`), its own enumerable
 * fields as the payload (JSON: a `Date` becomes its ISO string), and `projectId`, `tenantId` and
 * `userId` read from it when they are strings, as `RealtimeEventsService` does.
 */
export function toPublishInput(event: unknown, at?: string): PublishInput {
  try {
    if (event === null || typeof event !== 'object') {
      throw new EventBusError('INVALID_EVENT', `an event must be an object (an instance of an event class), got ${event === null ? 'null' : typeof event}`);
    }
    const type = eventTypeOf(Object.getPrototypeOf(event)?.constructor);
    // Own enumerable string keys only: cqrs's async context is a non-enumerable symbol.
    const payload = Object.fromEntries(Object.entries(event));
    return { type, payload, ...routingFields(event) };
  } catch (err) {
    if (at !== undefined && err instanceof EventBusError) throw new EventBusError(err.code, `${at}: ${err.message}`);
    throw err;
  }
}
