// Type-level tests of @situs/event-bus/nest (tsc only): EventBusService is typed by the EventMap
// declared in event-map.test-d.ts (same program), as EventBus is.
import { EventBusModule, EventBusService, OnBusEvent, ProjectEventType, RealtimeEventsService } from '@situs/event-bus/nest';

declare const service: EventBusService;
declare const realtime: RealtimeEventsService;

async function typed(): Promise<void> {
  const paid = await service.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 5 } });
  const amount: number = paid.payload.amount;
  void amount;
  // @ts-expect-error wrong payload type for a declared event
  await service.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 'five' } });
  service.subscribe('invoice.*', (e) => {
    if (e.type === 'invoice.voided') {
      const reason: string = e.payload.reason;
      void reason;
    }
  });
  const page = await service.getEvents({ types: ['invoice.paid'] });
  const first: number | undefined = page.events[0]?.payload.amount;
  void first;
}
void typed;

// The legacy service takes legacy names or any string, and returns nothing to await.
const nothing: void = realtime.publish(ProjectEventType.PROJECT_CREATED, { projectId: 'p1' });
realtime.publish('anything.goes');
void nothing;
// @ts-expect-error the type is a string
realtime.publish(42, {});

EventBusModule.forRoot({ storeUrl: 'memory:', isGlobal: true, mapEventType: (t) => t });
EventBusModule.forRootAsync({ useFactory: () => ({ storeUrl: 'memory:' }), inject: [] });
// @ts-expect-error unknown bus option
EventBusModule.forRoot({ storeUri: 'memory:' });

class Handlers {
  @OnBusEvent('invoice.*', { group: 'billing', from: 'beginning' })
  onInvoice(): void {}
}
void Handlers;

// Plugins, enhancers and named buses.
import type { ExecutionContext } from '@nestjs/common';
import {
  BusPayload,
  EventBusPlugin,
  EventBusPluginRegistry,
  InjectEventBus,
  getEventBusToken,
  isEventBusContext,
  type InstalledPlugin,
} from '@situs/event-bus/nest';

@EventBusPlugin({ name: 'audit', version: '1.0.0' })
class AuditPlugin {
  @OnBusEvent('project.*', { enhancers: true, bus: 'audit' })
  onProject(@BusPayload('name') name: string): void {
    void name;
  }
}
declare const registry: EventBusPluginRegistry;
const installing: Promise<InstalledPlugin> = registry.install(AuditPlugin);
void installing;
void registry.uninstall('audit');
// @ts-expect-error a plugin needs a version
EventBusPlugin({ name: 'x' });

class Injected {
  constructor(@InjectEventBus('audit') readonly audit: EventBusService) {}
}
void Injected;
const token: unknown = getEventBusToken('audit');
void token;
EventBusModule.forRoot({ storeUrl: 'memory:', name: 'audit' });
EventBusModule.forRootAsync({ name: 'audit', useFactory: () => ({ storeUrl: 'memory:' }) });
declare const context: ExecutionContext;
const fromBus: boolean = isEventBusContext(context);
void fromBus;
