import 'reflect-metadata';
import type { SubscribeOptions } from '../types';

/** Metadata key of `@OnBusEvent`, read by the module's handler discovery. */
export const ON_BUS_EVENT = 'situs:event-bus:on-bus-event';

/** What `@OnBusEvent` accepts besides the pattern: filters, a durable group, where to start. */
export type OnBusEventOptions = Pick<SubscribeOptions, 'group' | 'projectId' | 'tenantId' | 'from'> &
  Omit<SubscribeOptions, 'group' | 'projectId' | 'tenantId' | 'from'> & {
    /**
     * Run the handler through Nest's guards, interceptors and pipes (global ones included), with
     * `isEventBusContext(context)` true in them. A guard that refuses makes the call fail like a
     * throwing handler (logged, counted; retried and dead-lettered in a group).
     */
    enhancers?: boolean;
    /** The bus to subscribe to, for apps with several (`EventBusModule.forRoot({ name })`); default: the unnamed one. */
    bus?: string;
  };

/** One `@OnBusEvent` on a method (a method may carry several). */
export interface OnBusEventMetadata {
  patterns: string[];
  options: OnBusEventOptions;
}

/**
 * Subscribes the method to events matching `pattern` (`*` one segment, `**`/`#` the rest) once
 * the application has bootstrapped, in position order. With `group` it is a member of a durable
 * consumer group. Without `from`, it also gets every event published while the app bootstrapped.
 * The provider must be a singleton (request-scoped or transient ones are refused at bootstrap).
 */
export function OnBusEvent(pattern: string | readonly string[], options: OnBusEventOptions = {}): MethodDecorator {
  const patterns = typeof pattern === 'string' ? [pattern] : [...pattern];
  return (_target, _key, descriptor) => {
    const method = descriptor.value as unknown;
    if (typeof method !== 'function') throw new TypeError('@OnBusEvent decorates methods');
    const previous = (Reflect.getOwnMetadata(ON_BUS_EVENT, method) as OnBusEventMetadata[] | undefined) ?? [];
    // Decorators apply bottom-up; prepend so subscriptions follow the order they are written in.
    Reflect.defineMetadata(ON_BUS_EVENT, [{ patterns, options }, ...previous], method);
    return descriptor;
  };
}
