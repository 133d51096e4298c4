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
