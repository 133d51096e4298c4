import { Logger } from '@nestjs/common';
import type { IEvent, IMessageSource } from '@nestjs/cqrs';
import type { Subject } from 'rxjs';
import { EventBusError, messageOf } from '../../errors';
import type { EventBus } from '../../event-bus';
import type { BusEvent, SubscribeOptions, Subscription } from '../../types';
import { className, eventTypeOf } from './event-type';
import { rehydrate, type BusEventClass } from './rehydrate';

/** How `BusMessageSource` subscribes: a consumer group, where to start, partitioning. */
export type BusMessageSourceOptions = Pick<SubscribeOptions, 'group' | 'from' | 'partitionBy' | 'partitions' | 'leaseMs'>;

const INACTIVE: Subscription = { unsubscribe: () => undefined, active: false };

/**
 * The `IMessageSource` of `@nestjs/cqrs`'s `EventBus`: subscribes to the bus for the types of the
 * event classes it was given, rebuilds each delivered event as an instance of its class
 * (`rehydrate`) and pushes it to cqrs's subject, where `@EventsHandler`s and sagas see it. Events
 * of these types published by any instance, through cqrs or not, are delivered (at least once).
 */
export class BusMessageSource<E extends IEvent = IEvent> implements IMessageSource<E> {
  private readonly logger = new Logger('EventBus');
  private readonly classes = new Map<string, BusEventClass>();
  private subscription: Subscription = INACTIVE;

  constructor(
    private readonly bus: EventBus,
    private readonly options: BusMessageSourceOptions = {},
  ) {}

  /**
   * Adds event classes to receive (before `bridgeEventsTo`). `INVALID_EVENT` for a class without a
   * bus type, `INVALID_CONFIG` when two classes claim one type.
   */
  add(...eventClasses: BusEventClass[]): this {
    for (const eventClass of eventClasses) {
      const type = eventTypeOf(eventClass);
      const known = this.classes.get(type);
      if (known !== undefined && known !== eventClass) {
        throw new EventBusError(
          'INVALID_CONFIG',
          `${className(eventClass)} and ${className(known)} both have the bus event type ${type}: a delivered event could not tell which to become`,
        );
      }
      this.classes.set(type, eventClass);
    }
    return this;
  }

  /** The bus types received, in the order their classes were added. */
  get types(): string[] {
    return [...this.classes.keys()];
  }

  /** Starts delivering to `subject` (a second call moves delivery to the new subject). */
  bridgeEventsTo<T extends E>(subject: Subject<T>): Subscription {
    this.close();
    const types = this.types;
    if (types.length === 0) return INACTIVE;
    const handler = (stored: BusEvent): void => {
      const eventClass = this.classes.get(stored.type);
      if (eventClass === undefined) return;
      let event: T;
      try {
        event = rehydrate(eventClass, stored) as T;
      } catch (err) {
        this.logger.error(
          `could not rebuild ${stored.type} at position ${stored.position} as ${className(eventClass)}: ${messageOf(err)}`,
          err instanceof Error ? err.stack : undefined,
        );
        // Counted by the bus; a group retries it, then dead-letters it.
        throw err;
      }
      // cqrs runs each handler in its own catchError: one that throws does not reach here.
      subject.next(event);
    };
    this.subscription = this.bus.subscribe(types, handler, { ...this.options });
    return this.subscription;
  }

  /** Stops delivering (the module calls it when the app shuts down). */
  close(): void {
    this.subscription.unsubscribe();
    this.subscription = INACTIVE;
  }
}
