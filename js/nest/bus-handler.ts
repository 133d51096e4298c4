import 'reflect-metadata';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { ExternalContextCreator, MetadataScanner } from '@nestjs/core';
import { messageOf } from '../errors';
import type { BusEvent, SubscribeOptions, Subscription } from '../types';
import { BUS_HANDLER_ARGS, EVENT_BUS_CONTEXT_TYPE, busHandlerParams } from './event-bus-context';
import { ON_BUS_EVENT, type OnBusEventMetadata } from './on-bus-event';
import { OPENED_BUS, type OpenedBus } from './opened-bus';

/** One `@OnBusEvent` on one method of an instance. */
export interface HandlerMethod {
  method: string;
  meta: OnBusEventMetadata;
}

/** A subscribed handler method. */
export interface ActiveHandler {
  readonly method: string;
  readonly subscription: Subscription;
  /**
   * Unsubscribes, waits for the event in hand (if any) to be handled, and returns the last
   * position handled, so that a successor can start right after it: no gap, no duplicate.
   */
  stop(): Promise<number>;
}

/** The `@OnBusEvent` methods of a class, in the order they are written. */
export function handlerMethods(proto: object, scanner: MetadataScanner): HandlerMethod[] {
  const found: HandlerMethod[] = [];
  for (const method of scanner.getAllMethodNames(proto)) {
    const fn = (proto as Record<string, unknown>)[method];
    if (typeof fn !== 'function') continue;
    const metas = Reflect.getMetadata(ON_BUS_EVENT, fn) as OnBusEventMetadata[] | undefined;
    for (const meta of metas ?? []) found.push({ method, meta });
  }
  return found;
}

/**
 * Subscribes `@OnBusEvent` methods to the module's bus: errors are logged with the handler's
 * name and rethrown (so the bus counts them and a group retries and dead-letters them), and with
 * `enhancers: true` the call goes through Nest's guards, interceptors and pipes.
 */
@Injectable()
export class BusHandlers {
  private readonly logger = new Logger('EventBus');

  constructor(
    @Inject(OPENED_BUS) private readonly opened: OpenedBus,
    @Inject(ExternalContextCreator) private readonly contexts: ExternalContextCreator,
  ) {}

  /**
   * Subscribes `instance[method]`. Without `from` or `group` in its options it starts after
   * position `after`, so what was published since then (during bootstrap, say) still reaches it.
   */
  subscribe(instance: object, { method, meta }: HandlerMethod, label: string, after: number): ActiveHandler {
    const call = this.caller(instance, method, meta);
    const { enhancers: _enhancers, bus: _bus, ...options } = meta.options;
    const subscribeOptions: SubscribeOptions = { ...options };
    if (subscribeOptions.from === undefined && subscribeOptions.group === undefined) subscribeOptions.from = after;
    let last = typeof subscribeOptions.from === 'number' ? subscribeOptions.from : after;
    let inHand: Promise<unknown> | undefined;
    const failed = (event: BusEvent, err: unknown): never => {
      this.logger.error(
        `${label}.${method} failed on ${event.type} at position ${event.position}: ${messageOf(err)}`,
        err instanceof Error ? err.stack : undefined,
      );
      throw err;
    };
    const settled = (event: BusEvent, run?: Promise<unknown>) => {
      if (inHand === run) inHand = undefined;
      if (event.position > last) last = event.position;
    };
    // A handler that returns at once is done at once (no promise made for it, as the bus awaits
    // only thenables); one that returns a promise is in hand until it settles.
    const handler = (event: BusEvent): void | Promise<void> => {
      let result: unknown;
      try {
        result = call(event);
      } catch (err) {
        settled(event);
        failed(event, err);
      }
      if (!isThenable(result)) {
        settled(event);
        return;
      }
      const run = Promise.resolve(result);
      inHand = run;
      return run.then(
        () => settled(event, run),
        (err: unknown) => {
          settled(event, run);
          failed(event, err);
        },
      );
    };
    const subscription = this.opened.bus.subscribe(meta.patterns, handler, subscribeOptions);
    return {
      method,
      subscription,
      async stop() {
        subscription.unsubscribe();
        await inHand?.catch(() => undefined);
        return last;
      },
    };
  }

  private caller(instance: object, method: string, meta: OnBusEventMetadata): (event: BusEvent) => unknown {
    const fn = (instance as Record<string, (event: BusEvent) => unknown>)[method];
    if (!meta.options.enhancers) return (event) => fn.call(instance, event);
    // Guards, interceptors and pipes as for a controller method, with a context type of our own
    // (see isEventBusContext). Exception filters are not applied: a failure stays a handler
    // failure, counted and retried by the bus.
    return this.contexts.create(
      instance as Record<string, unknown>,
      fn as (...args: unknown[]) => unknown,
      method,
      BUS_HANDLER_ARGS,
      busHandlerParams,
      undefined,
      undefined,
      { guards: true, interceptors: true, filters: false },
      EVENT_BUS_CONTEXT_TYPE,
    ) as (event: BusEvent) => unknown;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}
