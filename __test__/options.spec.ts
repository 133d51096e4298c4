// Every option the TypeScript types declare, passed at once, is one the core accepts: the core
// refuses unknown option names, so a TS field the Rust side does not have (or spells differently)
// fails here. The object is typed so that a field added to EventBusOptions must be added here too.
import { EventBus, type EventBusOptions, type LogRecord } from '@situs/event-bus';

type DeepRequired<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends object
    ? { [K in keyof T]-?: DeepRequired<NonNullable<T[K]>> }
    : T;

// `tracing` is left out: this suite runs on the default build, which refuses `tracing.otlp` by
// design (it is checked below), and it has no other setting.
const everyOption: DeepRequired<Omit<EventBusOptions, 'tracing'>> = {
  storeUrl: 'memory:',
  store: { poolSize: 4, acquireTimeoutMs: 2000 },
  retention: { archiveAfter: '30d', deleteArchivedAfter: 90 * 86_400_000, intervalMs: 120_000 },
  enabled: true,
  webhook: {
    retryAttempts: 2,
    timeoutMs: 4000,
    concurrency: 16,
    perEndpointConcurrency: 4,
    allowPrivateNetworks: false,
    allowHttp: false,
    backoff: { initialMs: 1000, maxMs: 60_000, factor: 3 },
    disableAfterFailures: 20,
    pollIntervalMs: 2000,
    workers: false,
  },
  sse: { heartbeatIntervalMs: 15_000, replayBufferSize: 2000, clientBufferSize: 512, retryMs: 5000 },
  batch: { maxSize: 500, maxDelayMs: 1 },
  validation: { maxPayloadBytes: 65_536, schemas: { 'order.placed': { type: 'object' } } },
  security: { requireTenant: false },
  delivery: { pollIntervalMs: 250 },
  health: { storeTimeoutMs: 800, listenerDownMs: 20_000, maxWebhookBacklog: 500, maxGroupLagEvents: 5000, maxGroupLagMs: 60_000 },
  metrics: { enabled: true, refreshIntervalMs: 1000, listen: { host: '127.0.0.1', port: 0, path: '/metrics' } },
  logger: (_record: LogRecord) => undefined,
  logLevel: 'warn',
};

describe('EventBusOptions', () => {
  it('every option the TypeScript types declare is accepted by the core', async () => {
    const bus = await EventBus.open(everyOption);
    try {
      // The schema option took effect: a payload that is not an object is refused.
      await expect(bus.publish({ type: 'order.placed', payload: 1 })).rejects.toMatchObject({ code: 'INVALID_EVENT' });
      expect((await bus.publish({ type: 'order.placed', payload: {} })).position).toBe(1);
    } finally {
      await bus.close();
    }
  });

  it('tracing.otlp is refused by an addon built without the otlp feature', async () => {
    const tracing: DeepRequired<EventBusOptions['tracing']> = {
      otlp: { endpoint: 'http://127.0.0.1:4318', serviceName: 'test' },
    };
    await expect(EventBus.open({ ...everyOption, tracing })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringContaining('built without OTLP'),
    });
  });

  it('an option the core does not know is refused, naming it', async () => {
    await expect(
      EventBus.open({ ...everyOption, webhook: { ...everyOption.webhook, retries: 3 } } as unknown as EventBusOptions),
    ).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringContaining('retries') });
  });
});
