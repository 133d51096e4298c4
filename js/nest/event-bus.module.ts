import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { EventBus } from '../event-bus';
import { BusHandlers } from './bus-handler';
import { BusLifecycle } from './bus-lifecycle';
import { EventBusService } from './event-bus.service';
import { HandlerExplorer } from './handler-explorer';
import { ConfigurableEventBusModule, EVENT_BUS_MODULE_OPTIONS } from './module-definition';
import { openBus, OPENED_BUS, type OpenedBus } from './opened-bus';
import { EventBusPluginRegistry } from './plugin-registry';
import { RealtimeEventsService } from './realtime-events.service';

/**
 * Opens the bus during bootstrap and closes it on shutdown; provides `EventBus`,
 * `EventBusService`, `RealtimeEventsService` and `EventBusPluginRegistry`, subscribes
 * `@OnBusEvent` handlers and installs `@EventBusPlugin` providers. With `name`, its providers are
 * exported under named tokens (`@InjectEventBus(name)`), for apps with several buses.
 *
 * ```ts
 * EventBusModule.forRoot({ storeUrl: process.env.EVENT_STORE_URL, isGlobal: true })
 * EventBusModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ storeUrl: config.get('EVENT_STORE_URL') }) })
 * EventBusModule.forRoot({ name: 'audit', storeUrl: process.env.AUDIT_STORE_URL })
 * ```
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    { provide: OPENED_BUS, useFactory: openBus, inject: [EVENT_BUS_MODULE_OPTIONS] },
    { provide: EventBus, useFactory: (opened: OpenedBus) => opened.bus, inject: [OPENED_BUS] },
    EventBusService,
    RealtimeEventsService,
    BusHandlers,
    HandlerExplorer,
    EventBusPluginRegistry,
    BusLifecycle,
  ],
  // Exports are added per instance (module-definition.ts): under the classes, or under named
  // tokens for a named bus.
})
export class EventBusModule extends ConfigurableEventBusModule {}
