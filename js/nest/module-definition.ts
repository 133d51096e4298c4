import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { EventBusModuleOptions } from './options';

/** `forRoot` / `forRootAsync` with an `isGlobal` extra (read from the top level, not the factory). */
export const {
  ConfigurableModuleClass: ConfigurableEventBusModule,
  MODULE_OPTIONS_TOKEN: EVENT_BUS_MODULE_OPTIONS,
  OPTIONS_TYPE: EVENT_BUS_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: EVENT_BUS_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<EventBusModuleOptions>({ moduleName: 'EventBus' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createEventBusOptions')
  .setExtras({ isGlobal: false }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

/** What `EventBusModule.forRoot` takes: the options plus `isGlobal`. */
export type EventBusModuleRootOptions = typeof EVENT_BUS_OPTIONS_TYPE;
/** What `EventBusModule.forRootAsync` takes: `imports`, `inject`, `useFactory | useClass | useExisting`, `isGlobal`. */
export type EventBusModuleAsyncOptions = typeof EVENT_BUS_ASYNC_OPTIONS_TYPE;
