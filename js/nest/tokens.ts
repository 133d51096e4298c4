import { Inject } from '@nestjs/common';
import { EventBus } from '../event-bus';
import { EventBusService } from './event-bus.service';
import { EventBusPluginRegistry } from './plugin-registry';
import { RealtimeEventsService } from './realtime-events.service';

/** The providers a module exports: under their classes for the default bus, under named tokens otherwise. */
const EXPORTED = { EventBus, EventBusService, RealtimeEventsService, EventBusPluginRegistry } as const;
type ExportedName = keyof typeof EXPORTED;

function tokenOf(kind: ExportedName, name: string | null | undefined): string | (typeof EXPORTED)[ExportedName] {
  return name == null ? EXPORTED[kind] : `situs:event-bus:${name}:${kind}`;
}

/** The token of a bus's `EventBus` (`EventBusModule.forRoot({ name })`); the class itself without a name. */
export function getEventBusToken(name?: string | null): string | typeof EventBus {
  return tokenOf('EventBus', name) as string | typeof EventBus;
}

/** The token of a bus's `EventBusService`; the class itself without a name. */
export function getEventBusServiceToken(name?: string | null): string | typeof EventBusService {
  return tokenOf('EventBusService', name) as string | typeof EventBusService;
}

/** The token of a bus's `RealtimeEventsService`; the class itself without a name. */
export function getRealtimeEventsToken(name?: string | null): string | typeof RealtimeEventsService {
  return tokenOf('RealtimeEventsService', name) as string | typeof RealtimeEventsService;
}

/** The token of a bus's `EventBusPluginRegistry`; the class itself without a name. */
export function getPluginRegistryToken(name?: string | null): string | typeof EventBusPluginRegistry {
  return tokenOf('EventBusPluginRegistry', name) as string | typeof EventBusPluginRegistry;
}

/** Every token a module with this name exports, each bound to the module's own provider. */
export function exportedProviders(name: string | null): { providers: Array<{ provide: string; useExisting: unknown }>; exports: unknown[] } {
  const kinds = Object.keys(EXPORTED) as ExportedName[];
  if (name === null) return { providers: [], exports: kinds.map((k) => EXPORTED[k]) };
  const providers = kinds.map((k) => ({ provide: tokenOf(k, name) as string, useExisting: EXPORTED[k] }));
  return { providers, exports: providers.map((p) => p.provide) };
}

/**
 * Injects the `EventBusService` of the bus opened with `EventBusModule.forRoot({ name })`;
 * without a name, the default bus's (the same as injecting `EventBusService`).
 */
export function InjectEventBus(name?: string): PropertyDecorator & ParameterDecorator {
  return Inject(getEventBusServiceToken(name));
}
