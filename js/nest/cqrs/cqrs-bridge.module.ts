import { type DynamicModule, Module, type ModuleMetadata } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { EventBus } from '../../event-bus';
import { CqrsBridge } from './cqrs-bridge';
import { BusEventPublisher } from './event-publisher';
import { BusMessageSource, type BusMessageSourceOptions } from './message-source';
import type { BusEventClass } from './rehydrate';

/** Options of `CqrsBridgeModule.forRoot`. */
export interface CqrsBridgeModuleOptions extends BusMessageSourceOptions {
  /**
   * Event classes to receive besides those of the app's `@EventsHandler`s (found at bootstrap):
   * list the ones only sagas (`ofType`) listen to.
   */
  events?: BusEventClass[];
  /** Modules providing `EventBus`, when `EventBusModule` is not global. */
  imports?: ModuleMetadata['imports'];
}

/** The log's last position, read while the app is created: the bridge replays what came after it. */
async function headPosition(bus: EventBus): Promise<number> {
  const { events } = await bus.getEvents({ order: 'desc', limit: 1 });
  return events[0]?.position ?? 0;
}

/**
 * Bridges `@nestjs/cqrs` to the bus: `EventBus.publish(new OrderPlaced(…))` is stored durably and
 * fanned out to every instance, where `@EventsHandler(OrderPlaced)` handlers and sagas get an
 * `OrderPlaced` instance. Import it next to `CqrsModule.forRoot()` and `EventBusModule`:
 *
 * ```ts
 * imports: [CqrsModule.forRoot(), EventBusModule.forRoot({ storeUrl, isGlobal: true }), CqrsBridgeModule.forRoot()]
 * ```
 *
 * Without `group` every instance runs its handlers for every event; with `group` each event is
 * handled by one instance of the group. Delivery is at-least-once: make handlers idempotent.
 */
@Module({})
export class CqrsBridgeModule {
  static forRoot(options: CqrsBridgeModuleOptions = {}): DynamicModule {
    const { events = [], imports = [], ...subscribe } = options;
    return {
      module: CqrsBridgeModule,
      imports: [DiscoveryModule, ...imports],
      providers: [
        { provide: BusEventPublisher, useFactory: (bus: EventBus) => new BusEventPublisher(bus), inject: [EventBus] },
        {
          provide: BusMessageSource,
          useFactory: async (bus: EventBus) =>
            new BusMessageSource(bus, { ...subscribe, from: subscribe.from ?? (await headPosition(bus)) }).add(...events),
          inject: [EventBus],
        },
        CqrsBridge,
      ],
      exports: [BusEventPublisher, BusMessageSource],
    };
  }
}
