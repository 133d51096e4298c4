import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { BusHandlers, handlerMethods, type ActiveHandler, type HandlerMethod } from './bus-handler';
import { BUS_NAME } from './bus-name';
import { OPENED_BUS, type OpenedBus } from './opened-bus';
import { pluginMetadataOf } from './plugin';
import { refuseScoped, type Wrapper } from './provider-scan';

/**
 * Finds `@OnBusEvent` methods on providers and controllers at `onApplicationBootstrap`, as
 * `@nestjs/event-emitter` does, and subscribes those meant for this module's bus. Plugins'
 * handlers are left to `EventBusPluginRegistry`.
 */
@Injectable()
export class HandlerExplorer implements OnApplicationBootstrap {
  private readonly active: ActiveHandler[] = [];

  constructor(
    @Inject(OPENED_BUS) private readonly opened: OpenedBus,
    @Inject(BUS_NAME) private readonly busName: string | null,
    @Inject(BusHandlers) private readonly handlers: BusHandlers,
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
  ) {}

  onApplicationBootstrap(): void {
    const wrappers = [...this.discovery.getProviders(), ...this.discovery.getControllers()] as unknown as Wrapper[];
    // Check every handler before subscribing any, so a refused one leaves nothing half-wired.
    const found: Array<{ instance: object; className: string; method: HandlerMethod }> = [];
    for (const wrapper of wrappers) {
      if (wrapper.isAlias || typeof wrapper.metatype !== 'function' || pluginMetadataOf(wrapper.metatype)) continue;
      const proto = (wrapper.metatype as { prototype?: object }).prototype;
      if (!proto) continue;
      const className = (wrapper.metatype as { name: string }).name;
      for (const method of handlerMethods(proto, this.scanner)) {
        if ((method.meta.options.bus ?? null) !== this.busName) continue;
        refuseScoped(wrapper, `@OnBusEvent on ${className}.${method.method}`);
        const instance = wrapper.instance as object | undefined;
        if (instance) found.push({ instance, className, method });
      }
    }
    // Replay what was published since the bus opened: bootstrap publishes are not lost.
    for (const { instance, className, method } of found) {
      this.active.push(this.handlers.subscribe(instance, method, className, this.opened.headPosition));
    }
  }
}
