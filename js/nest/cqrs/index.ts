// @situs/event-bus/nest/cqrs: the @nestjs/cqrs bridge, in an entry of its own so that importing
// @situs/event-bus or @situs/event-bus/nest never loads @nestjs/cqrs (an optional peer).
export { CqrsBridgeModule } from './cqrs-bridge.module';
export type { CqrsBridgeModuleOptions } from './cqrs-bridge.module';
export { BusEventPublisher } from './event-publisher';
export { BusMessageSource } from './message-source';
export type { BusMessageSourceOptions } from './message-source';
export { BusEventType, eventTypeOf, findEventType } from './event-type';
export { rehydrate, storedEventOf } from './rehydrate';
export type { BusEventClass } from './rehydrate';
export { toPublishInput } from './bus-input';
