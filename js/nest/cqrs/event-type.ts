import { EventBusError } from '../../errors';

/** The dot types given by `@BusEventType`, by class (the class itself: never inherited). */
const DECORATED = new WeakMap<object, string>();

function className(eventClass: unknown): string {
  const name = (eventClass as { name?: unknown } | null)?.name;
  return typeof name === 'string' && name !== '' ? name : '(anonymous class)';
}

function checkType(type: unknown, where: string): string {
  if (typeof type !== 'string' || type === '') {
    throw new EventBusError('INVALID_EVENT', `${where} must be a non-empty string (a dot type such as 'order.placed'), got ${JSON.stringify(type) ?? typeof type}`);
  }
  return type;
}

/**
 * Names the bus event type of a `@nestjs/cqrs` event class: `EventBus.publish(new OrderPlaced(…))`
 * stores an `order.placed` event, and `order.placed` events (from any instance) are delivered to
 * `@EventsHandler(OrderPlaced)` handlers as `OrderPlaced` instances. Wins over a static `eventType`.
 * The core checks the type's grammar when the first event is published.
 */
export function BusEventType(type: string): ClassDecorator {
  checkType(type, '@BusEventType type');
  return (target) => {
    DECORATED.set(target, type);
  };
}

/**
 * The class's bus event type, or undefined when it has none. The class's own `@BusEventType`
 * wins, then its own `static eventType`; neither is inherited: a subclass names its own type.
 */
export function findEventType(eventClass: unknown): string | undefined {
  if (typeof eventClass !== 'function') return undefined;
  const decorated = DECORATED.get(eventClass);
  if (decorated !== undefined) return decorated;
  if (Object.prototype.hasOwnProperty.call(eventClass, 'eventType')) {
    return checkType((eventClass as { eventType?: unknown }).eventType, `${className(eventClass)}.eventType`);
  }
  return undefined;
}

/**
 * The class's bus event type (see `findEventType`); `EventBusError` `INVALID_EVENT` naming the
 * class when it has none — a type is never made up from the class name.
 */
export function eventTypeOf(eventClass: unknown): string {
  const type = findEventType(eventClass);
  if (type !== undefined) return type;
  const name = className(eventClass);
  let hint = '';
  let parent: unknown = typeof eventClass === 'function' ? Object.getPrototypeOf(eventClass) : undefined;
  while (typeof parent === 'function' && parent !== Function.prototype) {
    if (findEventType(parent) !== undefined) {
      hint = ` (the type of its parent ${className(parent)} is not inherited)`;
      break;
    }
    parent = Object.getPrototypeOf(parent);
  }
  throw new EventBusError(
    'INVALID_EVENT',
    `${name} has no bus event type${hint}: decorate it with @BusEventType('…') or give it static readonly eventType = '…'`,
  );
}

/** The class name used in messages. */
export { className };
