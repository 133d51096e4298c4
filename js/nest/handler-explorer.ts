import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { EventBusError, messageOf } from '../errors';
import type { BusEvent, Subscription } from '../types';
import { ON_BUS_EVENT, type OnBusEventMetadata } from './on-bus-event';
import { OPENED_BUS, type OpenedBus } from './opened-bus';

/** The parts of Nest's `InstanceWrapper` used here (not imported: it is a deep import). */
interface Wrapper {
  instance: unknown;
  metatype: unknown;
  isAlias: boolean;
  isTransient: boolean;
  isDependencyTreeStatic(): boolean;
}

/**
 * Finds `@OnBusEvent` methods on providers and controllers at `onApplicationBootstrap`, as
 * `@nestjs/event-emitter` does, and subscribes them through the bus.
 */
@Injectable()
export class HandlerExplorer implements OnApplicationBootstrap {
  private readonly logger = new Logger('EventBus');
  private readonly subscriptions: Subscription[] = [];

  constructor(
    @Inject(OPENED_BUS) private readonly opened: OpenedBus,
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(Reflector) private readonly reflector: Reflector,
  ) {}

  onApplicationBootstrap(): void {
    const wrappers = [...this.discovery.getProviders(), ...this.discovery.getControllers()] as unknown as Wrapper[];
    // Check every handler before subscribing any, so a refused one leaves nothing half-wired.
    const found: Array<{ instance: Record<string, unknown>; className: string; method: string; meta: OnBusEventMetadata }> = [];
    for (const wrapper of wrappers) {
      if (wrapper.isAlias || typeof wrapper.metatype !== 'function') continue;
      const proto = (wrapper.metatype as { prototype?: object }).prototype;
      if (!proto) continue;
      const className = (wrapper.metatype as { name: string }).name;
      for (const method of this.scanner.getAllMethodNames(proto)) {
        const metas = this.reflector.get<OnBusEventMetadata[] | undefined>(
          ON_BUS_EVENT,
          (proto as Record<string, () => void>)[method],
        );
        if (!metas?.length) continue;
        if (wrapper.isTransient || !wrapper.isDependencyTreeStatic()) {
          throw new EventBusError(
            'INVALID_CONFIG',
            `@OnBusEvent on ${className}.${method}: ${className} is request-scoped or transient (or depends on one); ` +
              'bus handlers need a singleton provider',
          );
        }
        const instance = wrapper.instance as Record<string, unknown> | undefined;
        if (!instance) continue;
        for (const meta of metas) found.push({ instance, className, method, meta });
      }
    }
    for (const { instance, className, method, meta } of found) {
      this.subscriptions.push(this.subscribe(instance, className, method, meta));
    }
  }

  private subscribe(instance: Record<string, unknown>, className: string, method: string, meta: OnBusEventMetadata): Subscription {
    const handler = async (event: BusEvent): Promise<void> => {
      try {
        await (instance[method] as (e: BusEvent) => unknown).call(instance, event);
      } catch (err) {
        this.logger.error(
          `${className}.${method} failed on ${event.type} at position ${event.position}: ${messageOf(err)}`,
          err instanceof Error ? err.stack : undefined,
        );
        // Rethrown so the bus counts it and a group retries and dead-letters it.
        throw err;
      }
    };
    const options = { ...meta.options };
    // Replay what was published since the bus opened: bootstrap publishes are not lost.
    if (options.from === undefined && options.group === undefined) options.from = this.opened.headPosition;
    return this.opened.bus.subscribe(meta.patterns, handler, options);
  }
}
