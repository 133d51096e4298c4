import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { BusHandlers } from './bus-handler';
import { BusLifecycle } from './bus-lifecycle';
import { HandlerExplorer } from './handler-explorer';
import { ConfigurableEventBusModule, EVENT_BUS_MODULE_OPTIONS } from './module-definition';
import { openBus, OPENED_BUS } from './opened-bus';

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
    BusHandlers,
    HandlerExplorer,
    BusLifecycle,
  ],
  // EventBus, EventBusService, RealtimeEventsService and EventBusPluginRegistry are provided and
  // exported per instance (module-definition.ts): under the classes, or under a named bus's tokens.
})
export class EventBusModule extends ConfigurableEventBusModule {}
