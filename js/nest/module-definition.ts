import { ConfigurableModuleBuilder } from '@nestjs/common';
import { BUS_NAME, checkBusName } from './bus-name';
import type { EventBusModuleOptions } from './options';
import { exportedProviders } from './tokens';

/** What `forRoot` / `forRootAsync` take at the top level, beside the bus's options. */
interface ModuleExtras {
  /** Makes the module's exports visible everywhere without importing it. */
  isGlobal?: boolean;
  /**
   * A second (third, …) bus in the app: its providers are exported under named tokens
   * (`@InjectEventBus(name)`, `getEventBusToken(name)`), and only `@OnBusEvent(…, { bus: name })`
   * handlers subscribe to it. Without a name, the providers are exported under their classes.
   */
  name?: string;
}

/** `forRoot` / `forRootAsync` with `isGlobal` and `name` extras (read from the top level, not the factory). */
export const {
  ConfigurableModuleClass: ConfigurableEventBusModule,
  MODULE_OPTIONS_TOKEN: EVENT_BUS_MODULE_OPTIONS,
  OPTIONS_TYPE: EVENT_BUS_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: EVENT_BUS_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<EventBusModuleOptions>({ moduleName: 'EventBus' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createEventBusOptions')
  .setExtras<ModuleExtras>({ isGlobal: false, name: undefined }, (definition, extras) => {
    const name = checkBusName(extras.name);
    const exported = exportedProviders(name);
    return {
      ...definition,
      global: extras.isGlobal,
      providers: [...(definition.providers ?? []), { provide: BUS_NAME, useValue: name }, ...exported.providers],
      exports: [...(definition.exports ?? []), ...exported.exports] as never[],
    };
  })
  .build();

/** What `EventBusModule.forRoot` takes: the options plus `isGlobal` and `name`. */
export type EventBusModuleRootOptions = typeof EVENT_BUS_OPTIONS_TYPE;
/** What `EventBusModule.forRootAsync` takes: `imports`, `inject`, `useFactory | useClass | useExisting`, `isGlobal`, `name`. */
export type EventBusModuleAsyncOptions = typeof EVENT_BUS_ASYNC_OPTIONS_TYPE;
