import { Inject, type Provider } from '@nestjs/common';
import { EventBus } from '../event-bus';
import { EventBusService } from './event-bus.service';
import { OPENED_BUS, type OpenedBus } from './opened-bus';
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

/**
 * The providers a module exports, and their tokens. A named bus provides them under its named
 * tokens only — not under the classes too — so that `app.get(EventBusService)` can only find the
 * unnamed bus's.
 */
export function exportedProviders(name: string | null): { providers: Provider[]; exports: unknown[] } {
  const kinds = Object.keys(EXPORTED) as ExportedName[];
  const providers = kinds.map((k): Provider => {
    const provide = tokenOf(k, name);
    if (k === 'EventBus') return { provide, useFactory: (opened: OpenedBus) => opened.bus, inject: [OPENED_BUS] };
    return name === null ? EXPORTED[k] : { provide, useClass: EXPORTED[k] };
  });
  return { providers, exports: kinds.map((k) => tokenOf(k, name)) };
}

/**
 * Injects the `EventBusService` of the bus opened with `EventBusModule.forRoot({ name })`;
 * without a name, the default bus's (the same as injecting `EventBusService`).
 */
export function InjectEventBus(name?: string): PropertyDecorator & ParameterDecorator {
  return Inject(getEventBusServiceToken(name));
}
