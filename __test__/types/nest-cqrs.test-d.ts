// Type-level tests of @situs/event-bus/nest/cqrs (tsc only).
import { EventBus as CqrsEventBus, type IEventPublisher, type IMessageSource } from '@nestjs/cqrs';
import type { BusEvent, EventBus, PublishedEvent } from '@situs/event-bus';
import {
  BusEventPublisher,
  BusEventType,
  BusMessageSource,
  CqrsBridgeModule,
  eventTypeOf,
  storedEventOf,
} from '@situs/event-bus/nest/cqrs';

@BusEventType('order.placed')
class OrderPlaced {
  constructor(readonly orderId: string) {}
}
class OrderShipped {
  static readonly eventType = 'order.shipped';
  static fromBus(payload: unknown): OrderShipped {
    return new OrderShipped((payload as { orderId: string }).orderId);
  }
  constructor(readonly orderId: string) {}
}

// @ts-expect-error the type name is a string
@BusEventType(42)
class Wrong {}
void Wrong;

const type: string = eventTypeOf(OrderPlaced);
void type;

declare const bus: EventBus;
declare const cqrs: CqrsEventBus;

// The pair plugs into cqrs's interfaces.
const publisher: IEventPublisher = new BusEventPublisher(bus);
const source: IMessageSource = new BusMessageSource(bus, { group: 'orders', partitionBy: 'projectId' }).add(OrderPlaced, OrderShipped);
cqrs.publisher = publisher;
source.bridgeEventsTo(cqrs.subject$);

async function published(): Promise<void> {
  const one: PublishedEvent = await new BusEventPublisher(bus).publish(new OrderPlaced('o1'));
  const all: PublishedEvent[] = await new BusEventPublisher(bus).publishAll([new OrderPlaced('o1'), new OrderShipped('o1')]);
  void one;
  void all;
}
void published;

const stored: BusEvent | undefined = storedEventOf(new OrderPlaced('o1'));
void stored;

CqrsBridgeModule.forRoot();
CqrsBridgeModule.forRoot({ events: [OrderPlaced], group: 'orders', from: 'beginning', imports: [] });
// @ts-expect-error unknown option
CqrsBridgeModule.forRoot({ groupName: 'orders' });
// @ts-expect-error a group name is a string
CqrsBridgeModule.forRoot({ group: 1 });
