import { Inject, Injectable, Logger, type OnApplicationBootstrap, type Type } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModuleRef } from '@nestjs/core';
import { EventBusError, messageOf } from '../errors';
import { EventType, type Middleware, type PublishedEvent } from '../types';
import { BusHandlers, handlerMethods, type ActiveHandler } from './bus-handler';
import { BUS_NAME } from './bus-name';
import { OPENED_BUS, readHeadPosition, type OpenedBus } from './opened-bus';
import { pluginMetadataOf, type EventBusPluginHooks, type EventBusPluginMetadata } from './plugin';
import { refuseScoped, type Wrapper } from './provider-scan';

/** A plugin as the registry holds it. */
export interface InstalledPlugin {
  name: string;
  version: string;
  /** `@OnBusEvent` subscriptions it has. */
  handlers: number;
  middleware: boolean;
  installedAt: Date;
}

/** How `install` / `update` create a plugin given as a class. */
export interface PluginInstallOptions {
  /** The module whose providers the class's constructor is given (its `ModuleRef`). */
  moduleRef?: ModuleRef;
}

interface Entry {
  info: InstalledPlugin;
  handlers: Map<string, ActiveHandler>;
  removeMiddleware: (() => void) | undefined;
}

/**
 * Installs, updates and uninstalls `@EventBusPlugin` classes at runtime: each one's handlers and
 * middleware come and go together, and `install` / `update` / `uninstall` publish
 * `plugin.installed` / `plugin.updated` / `plugin.uninstalled` (`{ name, version }`, and
 * `previousVersion` on update). Plugins that are providers are installed at bootstrap without an
 * event. A throwing handler or middleware of one plugin never breaks the bus or another plugin.
 */
@Injectable()
export class EventBusPluginRegistry implements OnApplicationBootstrap {
  private readonly logger = new Logger('EventBus');
  private readonly plugins = new Map<string, Entry>();
  /** Operations run one at a time, so that two calls for one name cannot interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    @Inject(OPENED_BUS) private readonly opened: OpenedBus,
    @Inject(BUS_NAME) private readonly busName: string | null,
    @Inject(BusHandlers) private readonly handlers: BusHandlers,
    @Inject(DiscoveryService) private readonly discovery: DiscoveryService,
    @Inject(MetadataScanner) private readonly scanner: MetadataScanner,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
  ) {}

  onApplicationBootstrap(): void {
    const found: object[] = [];
    for (const wrapper of this.discovery.getProviders() as unknown as Wrapper[]) {
      if (wrapper.isAlias || typeof wrapper.metatype !== 'function') continue;
      const meta = pluginMetadataOf(wrapper.metatype);
      if (!meta || (meta.bus ?? null) !== this.busName) continue;
      refuseScoped(wrapper, `@EventBusPlugin ${meta.name}`);
      if (wrapper.instance) found.push(wrapper.instance as object);
    }
    // Bootstrap publishes are not lost: plugin handlers start where the bus opened.
    for (const instance of found) this.load(instance, this.opened.headPosition, new Map());
  }

  /** The installed plugins, in install order. */
  list(): InstalledPlugin[] {
    return [...this.plugins.values()].map((e) => ({ ...e.info }));
  }

  /** One installed plugin, or `undefined`. */
  get(name: string): InstalledPlugin | undefined {
    const entry = this.plugins.get(name);
    return entry && { ...entry.info };
  }

  /**
   * Installs a plugin and publishes `plugin.installed`; its handlers get events from now on.
   * `plugin` is an instance, or a class created with its dependencies injected from the module
   * of `options.moduleRef` (inject `ModuleRef` where the dependencies are provided; default: only
   * global providers are seen). Fails with `INVALID_CONFIG` if a plugin of that name is installed.
   */
  install(plugin: object | Type<object>, options: PluginInstallOptions = {}): Promise<InstalledPlugin> {
    return this.serially(async () => {
      const instance = await this.instanceOf(plugin, options);
      const meta = this.metadata(instance);
      if (this.plugins.has(meta.name)) {
        throw new EventBusError('INVALID_CONFIG', `plugin ${meta.name} is installed already (update it instead)`);
      }
      const entry = this.load(instance, await readHeadPosition(this.opened.bus), new Map());
      await this.announce(EventType.PLUGIN_INSTALLED, { name: meta.name, version: meta.version });
      return { ...entry.info };
    });
  }

  /**
   * Replaces an installed plugin by another version of it (same name) and publishes
   * `plugin.updated`. Each handler of the new version carries on where the old one's stopped
   * (no event missed or handled twice); handlers that are new start from now.
   */
  update(plugin: object | Type<object>, options: PluginInstallOptions = {}): Promise<InstalledPlugin> {
    return this.serially(async () => {
      const instance = await this.instanceOf(plugin, options);
      const meta = this.metadata(instance);
      const old = this.installedOrFail(meta.name);
      const head = await readHeadPosition(this.opened.bus);
      const resumeAt = await this.unload(meta.name, old);
      const entry = this.load(instance, head, resumeAt);
      await this.announce(EventType.PLUGIN_UPDATED, {
        name: meta.name,
        version: meta.version,
        previousVersion: old.info.version,
      });
      return { ...entry.info };
    });
  }

  /** Removes a plugin's handlers and middleware and publishes `plugin.uninstalled`. */
  uninstall(name: string): Promise<void> {
    return this.serially(async () => {
      const entry = this.installedOrFail(name);
      await this.unload(name, entry);
      await this.announce(EventType.PLUGIN_UNINSTALLED, { name, version: entry.info.version });
    });
  }

  /** Subscribes the plugin's handlers (each after `resumeAt`'s position for it, else `after`) and adds its middleware. */
  private load(instance: object, after: number, resumeAt: Map<string, number>): Entry {
    const meta = this.metadata(instance);
    const label = `${meta.name}@${meta.version} (${instance.constructor.name})`;
    const handlers = new Map<string, ActiveHandler>();
    const perMethod = new Map<string, number>();
    for (const method of handlerMethods(Object.getPrototypeOf(instance) as object, this.scanner)) {
      const n = perMethod.get(method.method) ?? 0;
      perMethod.set(method.method, n + 1);
      const key = `${method.method}#${n}`;
      handlers.set(key, this.handlers.subscribe(instance, method, label, resumeAt.get(key) ?? after));
    }
    const middleware = (instance as EventBusPluginHooks).middleware;
    const removeMiddleware = typeof middleware === 'function' ? this.opened.bus.use(this.isolated(label, instance, middleware)) : undefined;
    const entry: Entry = {
      info: { name: meta.name, version: meta.version, handlers: handlers.size, middleware: !!removeMiddleware, installedAt: new Date() },
      handlers,
      removeMiddleware,
    };
    this.plugins.set(meta.name, entry);
    return entry;
  }

  /** Stops a plugin; returns, per handler, the last position it handled. */
  private async unload(name: string, entry: Entry): Promise<Map<string, number>> {
    this.plugins.delete(name);
    entry.removeMiddleware?.();
    const last = new Map<string, number>();
    for (const [key, handler] of entry.handlers) last.set(key, await handler.stop());
    return last;
  }

  /** A plugin's middleware that cannot reject publishes: a failure is logged and the event goes on as it was. */
  private isolated(label: string, instance: object, middleware: Middleware): Middleware {
    return async (event: PublishedEvent) => {
      try {
        return await middleware.call(instance, event);
      } catch (err) {
        this.logger.warn(`plugin ${label} middleware failed on ${event.type}: ${messageOf(err)}; the event goes on unchanged`);
        return event;
      }
    };
  }

  private async instanceOf(plugin: object | Type<object>, options: PluginInstallOptions): Promise<object> {
    if (plugin === null || (typeof plugin !== 'object' && typeof plugin !== 'function')) {
      throw new EventBusError('INVALID_CONFIG', 'plugin must be an @EventBusPlugin class or instance');
    }
    if (typeof plugin !== 'function') return plugin;
    const cls = plugin as Type<object>;
    this.metadata(cls);
    return (options.moduleRef ?? this.moduleRef).create(cls);
  }

  private metadata(target: object): EventBusPluginMetadata {
    const meta = pluginMetadataOf(target);
    const name = typeof target === 'function' ? target.name : target.constructor.name;
    if (!meta) throw new EventBusError('INVALID_CONFIG', `plugin ${name} has no @EventBusPlugin({ name, version })`);
    return meta;
  }

  private installedOrFail(name: string): Entry {
    const entry = this.plugins.get(name);
    if (!entry) throw new EventBusError('NOT_FOUND', `plugin ${String(name)} is not installed`);
    return entry;
  }

  private async announce(type: string, payload: Record<string, string>): Promise<void> {
    await this.opened.bus.publish({ type, payload });
  }

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const result = this.queue.then(op, op);
    this.queue = result.catch(() => undefined);
    return result;
  }
}
