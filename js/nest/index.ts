// @situs/event-bus/nest: the NestJS integration. Needs @nestjs/common, @nestjs/core and rxjs
// (optional peers of the package); the terminus health indicator is a subpath of its own,
// @situs/event-bus/nest/health, so apps without terminus never load it.
export { EventBusModule } from './event-bus.module';
export { EVENT_BUS_MODULE_OPTIONS } from './module-definition';
export type { EventBusModuleAsyncOptions, EventBusModuleRootOptions } from './module-definition';
export type { EventBusModuleOptions } from './options';
export { EventBusService } from './event-bus.service';
export type { EventBusServiceHealth } from './event-bus.service';
export { RealtimeEventsService } from './realtime-events.service';
export type { RealtimeStreamFilter } from './realtime-events.service';
export { ProjectEventType, legacyEventType } from './event-types';
export { OnBusEvent, ON_BUS_EVENT } from './on-bus-event';
export type { OnBusEventMetadata, OnBusEventOptions } from './on-bus-event';
export { EVENT_BUS_CONTEXT_TYPE, isEventBusContext, busEventOf, BusPayload, BusEventParam } from './event-bus-context';
export { EventBusPlugin, EVENT_BUS_PLUGIN } from './plugin';
export type { EventBusPluginHooks, EventBusPluginMetadata } from './plugin';
export { EventBusPluginRegistry } from './plugin-registry';
export type { InstalledPlugin, PluginInstallOptions } from './plugin-registry';
export {
  InjectEventBus,
  getEventBusToken,
  getEventBusServiceToken,
  getPluginRegistryToken,
  getRealtimeEventsToken,
} from './tokens';
export { nestLogSink } from './nest-logger';
