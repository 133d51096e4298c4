import 'reflect-metadata';
import { EventBusError } from '../errors';
import type { Middleware } from '../types';

/** Metadata key of `@EventBusPlugin`. */
export const EVENT_BUS_PLUGIN = 'situs:event-bus:plugin';

/** What `@EventBusPlugin` declares. */
export interface EventBusPluginMetadata {
  /** Unique among the plugins of a bus; `update` and `uninstall` find the plugin by it. */
  name: string;
  version: string;
  /** The bus the plugin belongs to, for apps with several (`EventBusModule.forRoot({ name })`). */
  bus?: string;
}

/**
 * What a plugin class may have besides its `@OnBusEvent` handlers: a `middleware` method, run on
 * every publish of the bus. A middleware that throws is logged and skipped (the event goes on
 * unchanged): a plugin cannot make the bus reject publishes.
 */
export interface EventBusPluginHooks {
  middleware?: Middleware;
}

/**
 * Marks a class as a plugin: its `@OnBusEvent` handlers and `middleware` are installed and removed
 * together through `EventBusPluginRegistry`. A plugin that is also a provider is installed when
 * the application bootstraps; `registry.install(instanceOrClass)` installs one at runtime.
 */
export function EventBusPlugin(metadata: EventBusPluginMetadata): ClassDecorator {
  checkPluginMetadata(metadata, 'EventBusPlugin');
  return (target) => {
    Reflect.defineMetadata(EVENT_BUS_PLUGIN, { ...metadata }, target);
  };
}

/** The `@EventBusPlugin` metadata of an instance's class, or of a class. */
export function pluginMetadataOf(target: object): EventBusPluginMetadata | undefined {
  const cls = typeof target === 'function' ? target : target.constructor;
  return Reflect.getMetadata(EVENT_BUS_PLUGIN, cls) as EventBusPluginMetadata | undefined;
}

function checkPluginMetadata(metadata: EventBusPluginMetadata, where: string): void {
  if (metadata === null || typeof metadata !== 'object') {
    throw new EventBusError('INVALID_CONFIG', `@${where} takes { name, version }`);
  }
  for (const field of ['name', 'version'] as const) {
    const value: unknown = metadata[field];
    if (typeof value !== 'string' || value.trim() === '' || value.length > 200) {
      throw new EventBusError('INVALID_CONFIG', `@${where}: ${field} must be a non-empty string (up to 200 characters)`);
    }
  }
  if (metadata.bus !== undefined && typeof metadata.bus !== 'string') {
    throw new EventBusError('INVALID_CONFIG', `@${where}: bus must be a string`);
  }
}
