// Type-level tests: compiled with `tsc --noEmit` (npm run test:types), never executed.
// Each @ts-expect-error must be an error, or tsc fails.
import { BusEvent, EventBus, EventBusOptions, EventType, PublishedEvent } from '@situs/event-bus';

declare module '@situs/event-bus' {
  interface EventMap {
    'invoice.paid': { invoiceId: string; amount: number };
    'invoice.voided': { invoiceId: string; reason: string };
    'project.created': { projectId: string; name: string };
  }
}

declare const bus: EventBus;

async function publishing(): Promise<void> {
  const paid = await bus.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 5 } });
  const amount: number = paid.payload.amount;
  const position: number | null = paid.position;
  void amount;
  void position;

  // @ts-expect-error wrong payload type for a declared event
  await bus.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 'five' } });
  // @ts-expect-error missing payload property for a declared event
  await bus.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1' } });
  // @ts-expect-error unknown event field
  await bus.publish({ type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 1 }, tenant: 't' });
  // @ts-expect-error payload is required
  await bus.publish({ type: 'a.b' });

  // Undeclared types are allowed, with an unknown payload.
  const other = await bus.publish({ type: 'user.created', payload: { anything: true } });
  // @ts-expect-error unknown payload must be narrowed before use
  other.payload.anything;

  await bus.publish({ type: EventType.PROJECT_CREATED, payload: { projectId: 'p', name: 'n' } });
  // @ts-expect-error EventType constants carry the declared payload too
  await bus.publish({ type: EventType.PROJECT_CREATED, payload: { projectId: 'p' } });

  const many: PublishedEvent<'invoice.paid'>[] = await bus.publishMany([
    { type: 'invoice.paid', payload: { invoiceId: 'a', amount: 1 } },
  ]);
  void many;
}

function subscribing(): void {
  bus.subscribe('invoice.paid', (e) => {
    const id: string = e.payload.invoiceId;
    const n: number = e.payload.amount;
    const when: Date = e.timestamp;
    const pos: number = e.position;
    void [id, n, when, pos];
  });
  bus.subscribe('invoice.*', (e) => {
    // A wildcard gives the union of matching declared events; `type` narrows it.
    if (e.type === 'invoice.voided') {
      const reason: string = e.payload.reason;
      void reason;
    } else {
      const amount: number = e.payload.amount;
      void amount;
    }
    // @ts-expect-error `reason` exists only on invoice.voided
    e.payload.reason;
  });
  bus.subscribe('invoice.**', (e: BusEvent<'invoice.paid' | 'invoice.voided'>) => void e);
  // @ts-expect-error handler for invoice.paid cannot expect a voided payload
  bus.subscribe('invoice.paid', (e: BusEvent<'invoice.voided'>) => void e);
  bus.subscribe('invoice.paid', (e) => void e.payload.amount, {
    group: 'billing',
    from: 'beginning',
    maxAttempts: 3,
    backoff: { initialMs: 100, maxMs: 5000, factor: 2 },
    partitionBy: 'tenantId',
  });
  // @ts-expect-error unknown subscribe option
  bus.subscribe('a.b', () => {}, { groupName: 'billing' });
  // @ts-expect-error partitionBy is one of the event's key fields
  bus.subscribe('a.b', () => {}, { group: 'g', partitionBy: 'colour' });
}

async function deadLetters(): Promise<void> {
  const dead = await bus.deadLetters({ group: 'billing', status: 'dead' });
  const when: Date = dead[0].createdAt;
  const status: 'dead' | 'retrying' | 'resolved' = dead[0].status;
  void [when, status, dead[0].event.id];
  await bus.retryDeadLetter(dead[0].id);
  // @ts-expect-error unknown status
  await bus.deadLetters({ status: 'lost' });
}

async function querying(): Promise<void> {
  const page = await bus.getEvents({ types: ['invoice.paid'] });
  const amount: number = page.events[0].payload.amount;
  const next: string | null = page.nextCursor;
  void [amount, next];
  // @ts-expect-error unknown filter field
  await bus.getEvents({ colour: 'red' });
}

async function options(): Promise<void> {
  const ok: EventBusOptions = {
    storeUrl: 'memory:',
    enabled: true,
    webhook: { retryAttempts: 3, timeoutMs: 5000 },
    sse: { heartbeatIntervalMs: 30000 },
    batch: { maxSize: 500, maxDelayMs: 2 },
    validation: { maxPayloadBytes: 1024, schemas: { 'invoice.paid': { type: 'object' } } },
    security: { requireTenant: true },
    logger: (r) => console.log(r.level, r.message, r.fields),
    logLevel: 'debug',
  };
  await EventBus.open(ok);
  // @ts-expect-error unknown option
  await EventBus.open({ storeUrl: 'memory:', retries: 3 });
  // @ts-expect-error unknown nested option
  await EventBus.open({ batch: { size: 10 } });
  // @ts-expect-error wrong option type
  await EventBus.open({ enabled: 'yes' });
}

void [publishing, subscribing, deadLetters, querying, options];
