import { EventBus, EventBusError, EventBusErrorCode } from '@situs/event-bus';
import { openBus } from './helpers';

const circular: Record<string, unknown> = { a: 1 };
circular.self = circular;
const deepCircular: Record<string, unknown> = { list: [{}] };
(deepCircular.list as Array<Record<string, unknown>>)[0].back = deepCircular;
const long = 'x'.repeat(201);
const uuid = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

type Case = [name: string, input: unknown, code: EventBusErrorCode, message: string | RegExp];

// Each case: what a careless caller might send, the code, and the field the message must name.
const cases: Case[] = [
  ['missing type', { payload: 1 }, 'INVALID_EVENT', 'type is required'],
  ['type not a string', { type: 5, payload: 1 }, 'INVALID_EVENT', 'type must be a string, got a number'],
  ['type with one segment', { type: 'project', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with capitals', { type: 'Project.Created', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with empty segment', { type: 'project..created', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with trailing dot', { type: 'project.', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with digit segment', { type: 'project.1st', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with hyphen', { type: 'project.created-now', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with unicode', { type: 'projet.créé', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type with wildcard', { type: 'project.*', payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['type too long', { type: `a.${'b'.repeat(250)}`, payload: 1 }, 'INVALID_EVENT', 'type must match'],
  ['missing payload', { type: 'a.b' }, 'INVALID_EVENT', 'payload is required'],
  ['undefined payload', { type: 'a.b', payload: undefined }, 'INVALID_EVENT', 'payload is required'],
  ['circular payload', { type: 'a.b', payload: circular }, 'INVALID_EVENT', 'payload.self is a circular reference'],
  ['deep circular payload', { type: 'a.b', payload: deepCircular }, 'INVALID_EVENT', 'payload.list[0].back is a circular reference'],
  ['BigInt in payload', { type: 'a.b', payload: { n: 10n } }, 'INVALID_EVENT', 'payload.n is a BigInt'],
  ['BigInt payload', { type: 'a.b', payload: 10n }, 'INVALID_EVENT', 'payload is a BigInt'],
  ['function in payload', { type: 'a.b', payload: { f: () => 1 } }, 'INVALID_EVENT', 'payload.f is a function'],
  ['symbol in payload', { type: 'a.b', payload: { s: Symbol('x') } }, 'INVALID_EVENT', 'payload.s is a symbol'],
  ['NaN in payload', { type: 'a.b', payload: { n: NaN } }, 'INVALID_EVENT', 'payload.n is NaN'],
  ['Infinity in array', { type: 'a.b', payload: [1, Infinity] }, 'INVALID_EVENT', 'payload[1] is Infinity'],
  ['odd key path', { type: 'a.b', payload: { 'a key': { x: NaN } } }, 'INVALID_EVENT', 'payload["a key"].x is NaN'],
  ['function in metadata', { type: 'a.b', payload: 1, metadata: { f() {} } }, 'INVALID_EVENT', 'metadata.f is a function'],
  ['metadata not an object', { type: 'a.b', payload: 1, metadata: [1] }, 'INVALID_EVENT', 'metadata must be an object'],
  ['id not a UUID', { id: 'abc', type: 'a.b', payload: 1 }, 'INVALID_EVENT', 'id must be a UUID'],
  ['id a number', { id: 7, type: 'a.b', payload: 1 }, 'INVALID_EVENT', 'id must be a string'],
  ['empty projectId', { type: 'a.b', payload: 1, projectId: '' }, 'INVALID_EVENT', 'projectId must be a non-empty string'],
  ['projectId a number', { type: 'a.b', payload: 1, projectId: 42 }, 'INVALID_EVENT', 'projectId must be a string'],
  ['tenantId too long', { type: 'a.b', payload: 1, tenantId: long }, 'INVALID_EVENT', 'tenantId must be at most 200 characters'],
  ['userId an object', { type: 'a.b', payload: 1, userId: { id: 1 } }, 'INVALID_EVENT', 'userId must be a string, got an object'],
  ['empty userId', { type: 'a.b', payload: 1, userId: '' }, 'INVALID_EVENT', 'userId must be a non-empty string'],
  ['unknown field', { type: 'a.b', payload: 1, tenant: 't' }, 'INVALID_EVENT', 'unknown field `tenant`'],
  ['timestamp given', { type: 'a.b', payload: 1, timestamp: new Date() }, 'INVALID_EVENT', 'unknown field `timestamp`'],
  ['event is null', null, 'INVALID_EVENT', 'event must be an object'],
  ['event is a string', 'project.created', 'INVALID_EVENT', 'event must be an object'],
  ['event is an array', [{ type: 'a.b', payload: 1 }], 'INVALID_EVENT', 'event must be an object'],
  ['payload over the limit', { type: 'a.b', payload: 'x'.repeat(2048) }, 'PAYLOAD_TOO_LARGE', 'payload is 2050 bytes, over the limit of 2048'],
  ['multi-byte payload over the limit', { type: 'a.b', payload: 'é'.repeat(1024) }, 'PAYLOAD_TOO_LARGE', 'payload is 2050 bytes'],
  ['metadata over the limit', { type: 'a.b', payload: 1, metadata: { k: 'x'.repeat(2048) } }, 'PAYLOAD_TOO_LARGE', 'metadata is'],
  ['schema: missing property', { type: 'invoice.paid', payload: { amount: 5 } }, 'INVALID_EVENT', /^payload does not match the schema for invoice.paid/],
  ['schema: wrong type', { type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 'five' } }, 'INVALID_EVENT', /^payload\.amount does not match the schema/],
  ['schema: extra property', { type: 'invoice.paid', payload: { invoiceId: 'i1', amount: 1, x: 1 } }, 'INVALID_EVENT', 'does not match the schema'],
  ['duplicate id, other content', { id: uuid, type: 'a.b', payload: 'different' }, 'DUPLICATE_EVENT', uuid],
  ['duplicate id, other type', { id: uuid, type: 'a.c', payload: 'original' }, 'DUPLICATE_EVENT', uuid],
];

describe('bad input', () => {
  let bus: EventBus;
  let delivered: number;
  let stored: number;

  beforeAll(async () => {
    ({ bus } = await openBus({
      validation: {
        maxPayloadBytes: 2048,
        schemas: {
          'invoice.paid': {
            type: 'object',
            required: ['invoiceId', 'amount'],
            properties: { invoiceId: { type: 'string' }, amount: { type: 'number' } },
            additionalProperties: false,
          },
        },
      },
    }));
    await bus.publish({ id: uuid, type: 'a.b', payload: 'original' });
    stored = (await bus.getEvents()).events.length;
    delivered = 0;
    bus.subscribe('**', () => {
      delivered++;
    });
  });

  afterAll(() => bus.close());

  it('has at least 30 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)('%s', async (_name, input, code, message) => {
    const err = await bus.publish(input as never).catch((e) => e);
    expect(err).toBeInstanceOf(EventBusError);
    expect(err.code).toBe(code);
    if (typeof message === 'string') expect(err.message).toContain(message);
    else expect(err.message).toMatch(message);
    // The same event inside publishMany fails the whole batch, naming the index.
    const many = await bus.publishMany([{ type: 'a.ok', payload: 1 }, input as never]).catch((e) => e);
    expect(many).toBeInstanceOf(EventBusError);
    expect(many.code).toBe(code);
    expect(many.message).toMatch(/^events\[1\]/);
    // Nothing stored, nothing delivered.
    expect((await bus.getEvents()).events).toHaveLength(stored);
    expect(delivered).toBe(0);
  });

  it('refuses bad subscribe, query and scope input', async () => {
    const expectCode = (fn: () => unknown, code: EventBusErrorCode, text: string) => {
      let thrown: unknown;
      try {
        fn();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(EventBusError);
      expect(thrown).toMatchObject({ code, message: expect.stringContaining(text) });
    };
    expectCode(() => bus.subscribe('project..x', () => {}), 'INVALID_EVENT', 'pattern "project..x"');
    expectCode(() => bus.subscribe(['a.*', 'a.**.b'], () => {}), 'INVALID_EVENT', 'pattern[1]');
    expectCode(() => bus.subscribe([], () => {}), 'INVALID_EVENT', 'pattern must not be an empty list');
    expectCode(() => bus.subscribe(5 as never, () => {}), 'INVALID_EVENT', 'pattern must be a string');
    expectCode(() => bus.subscribe('a.b', 'handler' as never), 'INVALID_EVENT', 'handler must be a function');
    expectCode(() => bus.subscribe('a.b', () => {}, { colour: 'x' } as never), 'INVALID_EVENT', 'unknown field `colour`');
    expectCode(() => bus.subscribe('a.b', () => {}, { group: 'g', partitions: 0 }), 'INVALID_EVENT', 'partitions must be between 1 and 1024');
    expectCode(() => bus.subscribe('a.b', () => {}, { from: 'yesterday' } as never), 'INVALID_EVENT', 'from must be "now", "beginning" or a position');
    expectCode(() => bus.subscribe('a.b', () => {}, { from: -1 }), 'INVALID_EVENT', 'from must be');
    expectCode(() => bus.forTenant(''), 'INVALID_EVENT', 'tenantId must be a non-empty string');
    expectCode(() => bus.use(42 as never), 'INVALID_EVENT', 'middleware must be a function');
    await expect(bus.getEvents({ limit: 0 })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('limit') });
    await expect(bus.getEvents({ cursor: 'garbage' })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('cursor') });
    await expect(bus.getEvents({ since: 'last tuesday' })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('since') });
    await expect(bus.getEvents({ types: ['A'] })).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('types[0]') });
    await expect(bus.getEvents({ colour: 'red' } as never)).rejects.toMatchObject({ code: 'INVALID_EVENT', message: expect.stringContaining('colour') });
    await expect(bus.publishMany('nope' as never)).rejects.toMatchObject({ code: 'INVALID_EVENT', message: 'events must be an array' });
    expect(bus.metrics().subscribers).toBe(1);
  });
});
