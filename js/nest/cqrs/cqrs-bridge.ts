import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { EventBus as CqrsEventBus } from '@nestjs/cqrs';
import { EventBusError, messageOf } from '../../errors';
import { BusEventPublisher } from './event-publisher';
import { className, eventTypeOf } from './event-type';
import { BusMessageSource } from './message-source';
import type { BusEventClass } from './rehydrate';

/** `@nestjs/cqrs`'s metadata key for the event classes of an `@EventsHandler` (its index does not export it). */
const EVENTS_HANDLER_METADATA = '__eventsHandler__';

/** The parts of Nest's `InstanceWrapper` used here (not imported: it is a deep import). */
interface Wrapper {
  instance: unknown;
  metatype: unknown;
  inject?: unknown;
}

/**
 * Wires the bridge into cqrs's `EventBus`: replaces its publisher as soon as it is created (before
 * any lifecycle hook can publish), so cqrs's in-memory `DefaultPubSub` no longer pushes locally;
 * at `onApplicationBootstrap` adds the event classes of every `@EventsHandler` and bridges the bus
 * to cqrs's subject once `CqrsModule` has bound the handlers and sagas (its own bootstrap hook,
 * which may run before or after this one), so no delivery reaches an unwatched subject; stops
 * delivering when the app shuts down.
 */
@Injectable()
export class CqrsBridge implements OnApplicationBootstrap, OnModuleDestroy {
  /** False until CqrsModule has bound its handlers (true when that cannot be observed). */
  private handlersBound = true;
  private discovered = false;
  private bridged = false;

  constructor(
    @Inject(CqrsEventBus) private readonly cqrs: CqrsEventBus,
    @Inject(BusEventPublisher) publisher: BusEventPublisher,
    @Inject(BusMessageSource) private readonly source: BusMessageSource,
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
  ) {
    cqrs.publisher = publisher;
    // CqrsModule's onApplicationBootstrap binds handlers, then sagas (registerSagas, last).
    const registerSagas = cqrs.registerSagas as ((...args: unknown[]) => unknown) | undefined;
    if (typeof registerSagas === 'function') {
      this.handlersBound = false;
      cqrs.registerSagas = ((...args: unknown[]) => {
        const result = registerSagas.apply(cqrs, args);
        this.handlersBound = true;
        if (this.discovered) this.bridge();
        return result;
      }) as CqrsEventBus['registerSagas'];
    }
  }

  onApplicationBootstrap(): void {
    for (const wrapper of this.discovery.getProviders() as unknown as Wrapper[]) {
      const typeRef = wrapper.inject ? (wrapper.instance as object | undefined)?.constructor : wrapper.metatype;
      if (typeof typeRef !== 'function') continue;
      const events = Reflect.getMetadata(EVENTS_HANDLER_METADATA, typeRef) as BusEventClass[] | undefined;
      for (const eventClass of events ?? []) {
        try {
          eventTypeOf(eventClass);
        } catch (err) {
          // Its events could never arrive: every cqrs publish goes through the bus.
          throw new EventBusError('INVALID_CONFIG', `@EventsHandler ${className(typeRef)}: ${messageOf(err)}`);
        }
        this.source.add(eventClass);
      }
    }
    this.discovered = true;
    if (this.handlersBound) this.bridge();
  }

  onModuleDestroy(): void {
    this.discovered = false;
    this.source.close();
  }

  private bridge(): void {
    if (this.bridged) return;
    this.bridged = true;
    this.source.bridgeEventsTo(this.cqrs.subject$);
  }
}
