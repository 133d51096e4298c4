import type { Type } from '@nestjs/common';
import { EventBusError } from '../../errors';
import type { BusEvent } from '../../types';
import { className } from './event-type';

/** An event class, optionally with a static `fromBus` building its instance from a stored event. */
export type BusEventClass<E extends object = object> = Type<E> & {
  fromBus?(payload: unknown, event: BusEvent): E;
};

const STORED = new WeakMap<object, BusEvent>();

/**
 * The stored event a delivered cqrs event was rebuilt from (id, position, timestamp, routing
 * fields), for idempotent handlers: delivery is at-least-once. Undefined for other objects.
 */
export function storedEventOf(event: object): BusEvent | undefined {
  return STORED.get(event);
}

/**
 * Rebuilds a cqrs event from a stored one: `Class.fromBus(payload, event)` when the class has it,
 * else the payload's fields assigned onto `Object.create(Class.prototype)` (no constructor runs).
 */
export function rehydrate<E extends object>(eventClass: BusEventClass<E>, stored: BusEvent): E {
  let instance: unknown;
  if (typeof eventClass.fromBus === 'function') {
    instance = eventClass.fromBus(stored.payload, stored);
    if (instance === null || typeof instance !== 'object') {
      throw new EventBusError('INVALID_EVENT', `${className(eventClass)}.fromBus returned ${instance === null ? 'null' : typeof instance}, not an event`);
    }
  } else {
    instance = Object.create(eventClass.prototype as object);
    const payload = stored.payload;
    if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) Object.assign(instance as object, payload);
  }
  STORED.set(instance as object, stored);
  return instance as E;
}
