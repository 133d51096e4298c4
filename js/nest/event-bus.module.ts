import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { EventBus } from '../event-bus';
import { BusLifecycle } from './bus-lifecycle';
import { EventBusService } from './event-bus.service';
import { HandlerExplorer } from './handler-explorer';
import { ConfigurableEventBusModule, EVENT_BUS_MODULE_OPTIONS } from './module-definition';
import { openBus, OPENED_BUS, type OpenedBus } from './opened-bus';
import { RealtimeEventsService } from './realtime-events.service';

/**
 * Opens the bus during bootstrap and closes it on shutdown; provides `EventBus`,
 * `EventBusService` and `RealtimeEventsService`, and subscribes `@OnBusEvent` handlers.
 *
 * ```ts
 * EventBusModule.forRoot({ storeUrl: process.env.EVENT_STORE_URL, isGlobal: true })
 * EventBusModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ storeUrl: config.get('EVENT_STORE_URL') }) })
 * ```
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    { provide: OPENED_BUS, useFactory: openBus, inject: [EVENT_BUS_MODULE_OPTIONS] },
    { provide: EventBus, useFactory: (opened: OpenedBus) => opened.bus, inject: [OPENED_BUS] },
    EventBusService,
    RealtimeEventsService,
    HandlerExplorer,
    BusLifecycle,
  ],
  exports: [EventBus, EventBusService, RealtimeEventsService],
})
export class EventBusModule extends ConfigurableEventBusModule {}
