import 'reflect-metadata';
import type { ExecutionContext, PipeTransform, Type } from '@nestjs/common';
import type { BusEvent } from '../types';

/**
 * `ExecutionContext.getType()` of a bus handler run through Nest's guards, interceptors and pipes
 * (`@OnBusEvent(…, { enhancers: true })`).
 */
export const EVENT_BUS_CONTEXT_TYPE = 'situs-event-bus';

/**
 * True inside a guard, interceptor or filter called for a bus handler rather than an HTTP
 * request, so that a global HTTP guard can let bus handlers through:
 * `if (isEventBusContext(context)) return true;`.
 */
export function isEventBusContext(context: Pick<ExecutionContext, 'getType'>): boolean {
  return context.getType<string>() === EVENT_BUS_CONTEXT_TYPE;
}

/** The event a bus handler is called for, from its execution context (`undefined` elsewhere). */
export function busEventOf(context: ExecutionContext): BusEvent | undefined {
  return isEventBusContext(context) ? (context.getArgByIndex(0) as BusEvent) : undefined;
}

/**
 * Metadata key of `@BusPayload` / `@BusEventParam`: Nest's own key for handler arguments
 * (`ROUTE_ARGS_METADATA`, which `@nestjs/microservices` shares), because Nest's scanner registers
 * the pipe classes named under it — under a key of our own, `@BusPayload(SomePipe)` would be
 * silently skipped. It is a deep export of `@nestjs/common`, so it is spelled out here.
 */
export const BUS_HANDLER_ARGS = '__routeArguments__';

/** Argument kinds, the numeric part of the metadata keys (clear of Nest's route and RPC ones). */
const ArgType = { Event: 100, Payload: 101 } as const;
type ArgType = (typeof ArgType)[keyof typeof ArgType];

type ArgMetadata = Record<string, { index: number; data: string | undefined; pipes: Array<Type<PipeTransform> | PipeTransform> }>;

function argDecorator(type: ArgType, data: string | undefined, pipes: Array<Type<PipeTransform> | PipeTransform>): ParameterDecorator {
  return (target, key, index) => {
    if (key === undefined) return;
    const previous = (Reflect.getMetadata(BUS_HANDLER_ARGS, target.constructor, key) as ArgMetadata | undefined) ?? {};
    Reflect.defineMetadata(BUS_HANDLER_ARGS, { ...previous, [`${type}:${index}`]: { index, data, pipes } }, target.constructor, key);
  };
}

/**
 * The event's payload (or one of its fields) as a handler argument, passed through `pipes` (for
 * example a `ValidationPipe`) when the handler has `enhancers: true`.
 */
export function BusPayload(property?: string, ...pipes: Array<Type<PipeTransform> | PipeTransform>): ParameterDecorator;
export function BusPayload(...pipes: Array<Type<PipeTransform> | PipeTransform>): ParameterDecorator;
export function BusPayload(...args: Array<string | undefined | Type<PipeTransform> | PipeTransform>): ParameterDecorator {
  const property = typeof args[0] === 'string' || args[0] === undefined ? (args.shift() as string | undefined) : undefined;
  return argDecorator(ArgType.Payload, property, args as Array<Type<PipeTransform> | PipeTransform>);
}

/** The whole event as a handler argument, passed through `pipes` when the handler has `enhancers: true`. */
export function BusEventParam(...pipes: Array<Type<PipeTransform> | PipeTransform>): ParameterDecorator {
  return argDecorator(ArgType.Event, undefined, pipes);
}

/** Gives `ExternalContextCreator` the value of each decorated argument; the call's one argument is the event. */
export const busHandlerParams = {
  exchangeKeyForValue(type: number, data: unknown, args: unknown[]): unknown {
    const event = args[0] as BusEvent;
    if (type === ArgType.Event) return event;
    const payload = event.payload as Record<string, unknown> | null | undefined;
    return typeof data === 'string' ? payload?.[data] : payload;
  },
};
