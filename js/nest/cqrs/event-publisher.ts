import { Logger } from '@nestjs/common';
import type { IEvent, IEventPublisher } from '@nestjs/cqrs';
import { EventBusError, messageOf } from '../../errors';
import type { EventBusHandle } from '../../event-bus';
import type { PublishedEvent } from '../../types';
import { toPublishInput } from './bus-input';

/**
 * The `IEventPublisher` of `@nestjs/cqrs`'s `EventBus`: `publish` stores the event durably and the
 * bus fans it out to every instance sharing the store; `publishAll` stores all or none
 * (`publishMany`). It does not push to cqrs's subject itself: local handlers run when the bus
 * delivers the event back (`BusMessageSource`), so once, as in every other instance.
 *
 * From cqrs's point of view publishing is fire-and-forget: a failure (no bus type, bad payload,
 * store down, bus closed) is logged through Nest's `Logger` and counted, never an unhandled
 * rejection. The returned promise still rejects, for callers that await it.
 */
export class BusEventPublisher<E extends IEvent = IEvent> implements IEventPublisher<E> {
  private readonly logger = new Logger('EventBus');
  private failures = 0;

  constructor(private readonly bus: EventBusHandle) {}

  /** Publishes that failed since the app started. */
  get failedPublishes(): number {
    return this.failures;
  }

  publish<T extends E>(event: T): Promise<PublishedEvent> {
    return this.settle(() => `publish of ${describe(event)}`, () => this.bus.publish(toPublishInput(event)));
  }

  publishAll<T extends E>(events: T[]): Promise<PublishedEvent[]> {
    return this.settle(
      () => `publishAll of ${Array.isArray(events) ? `${events.length} events` : typeof events}`,
      () => {
        if (!Array.isArray(events)) throw new EventBusError('INVALID_EVENT', 'events must be an array');
        // Every event is checked before any is sent: one without a type fails the whole batch.
        return this.bus.publishMany(events.map((event, i) => toPublishInput(event, `events[${i}]`)));
      },
    );
  }

  private settle<R>(what: () => string, run: () => Promise<R>): Promise<R> {
    let result: Promise<R>;
    try {
      result = run();
    } catch (err) {
      result = Promise.reject(err);
    }
    // Handled here, so a caller that ignores the promise leaves no unhandled rejection.
    result.then(undefined, (err: unknown) => {
      this.failures++;
      this.logger.error(`${what()} failed: ${messageOf(err)}`);
    });
    return result;
  }
}

function describe(event: unknown): string {
  const name = (event as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof name === 'string' && name !== '' ? name : String(event === null ? null : typeof event);
}
