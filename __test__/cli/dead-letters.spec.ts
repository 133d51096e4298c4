// dead-letters list / retry: a consumer group member in this test process fails an event into
// its dead letters; the CLI lists it and sends it back, and the member handles it again.
import { EventBus } from '@situs/event-bus';
import type { DeadLetter } from '@situs/event-bus';
import { postgresStore } from '../stores';
import { cli, eventually, expectOneLineFailure, jsonLines } from './run-cli';

jest.setTimeout(120_000);

let store: Awaited<ReturnType<typeof postgresStore>>;
let bus: EventBus;
beforeAll(async () => {
  store = await postgresStore();
  bus = await EventBus.open({ storeUrl: store.url, logger: () => undefined, delivery: { pollIntervalMs: 50 } });
});
afterAll(async () => {
  await bus.close();
  await store.drop();
});

const run = (...args: string[]) => cli(['dead-letters', ...args, '--store-url', store.url]);
type LetterLine = Omit<DeadLetter, 'createdAt' | 'updatedAt'> & { createdAt: string; updatedAt: string };

it('list shows the dead letters with their filters; retry sends one back and the group handles it', async () => {
  let broken = true;
  const handled: string[] = [];
  const member = (group: string) =>
    bus.subscribe(
      'invoice.*',
      (event) => {
        if (broken && (event.payload as { poison?: boolean }).poison) throw new Error('cannot bill');
        handled.push(`${group}:${event.id}`);
      },
      { group, from: 'beginning', maxAttempts: 2, backoff: { initialMs: 1, maxMs: 5 } },
    );
  const billing = member('billing');
  const audit = member('audit');
  const poison = await bus.publish({ type: 'invoice.paid', payload: { poison: true }, projectId: 'p1' });
  const fine = await bus.publish({ type: 'invoice.paid', payload: {}, projectId: 'p1' });
  await eventually(() => handled.includes(`billing:${fine.id}`) && handled.includes(`audit:${fine.id}`), 'both groups past the poison event');

  const list = await run('list');
  expect(list).toMatchObject({ code: 0, stderr: '' });
  const letters = jsonLines<LetterLine>(list.stdout);
  expect(letters.map((l) => l.group).sort()).toEqual(['audit', 'billing']);
  for (const letter of letters) {
    expect(letter).toMatchObject({ position: poison.position, attempts: 2, error: 'cannot bill', status: 'dead' });
    expect(letter.event).toMatchObject({ id: poison.id, type: 'invoice.paid', payload: { poison: true }, timestamp: poison.timestamp.toISOString() });
  }
  const billingLetters = jsonLines<LetterLine>((await run('list', '--group', 'billing')).stdout);
  expect(billingLetters.map((l) => l.group)).toEqual(['billing']);
  expect(jsonLines((await run('list', '--limit', '1')).stdout)).toHaveLength(1);
  expect((await run('list', '--status', 'resolved')).stdout).toBe('');

  broken = false;
  const retry = await run('retry', String(billingLetters[0].id));
  expect(retry).toMatchObject({ code: 0, stderr: '', stdout: `dead letter ${billingLetters[0].id} sent back to its group\n` });
  await eventually(() => handled.includes(`billing:${poison.id}`), 'the billing member to handle the retried event');
  await eventually(async () => (await bus.deadLetters({ status: 'resolved' })).length === 1, 'the dead letter to resolve');
  const resolved = jsonLines<LetterLine>((await run('list', '--status', 'resolved')).stdout);
  expect(resolved.map((l) => [l.id, l.group, l.status])).toEqual([[billingLetters[0].id, 'billing', 'resolved']]);
  // The other group's letter was left alone.
  expect(jsonLines<LetterLine>((await run('list', '--status', 'dead')).stdout).map((l) => l.group)).toEqual(['audit']);
  expect(handled).not.toContain(`audit:${poison.id}`);
  billing.unsubscribe();
  audit.unsubscribe();
});

it('retrying an unknown dead letter fails with NOT_FOUND, exit 1', async () => {
  expectOneLineFailure(await run('retry', '424242'), 1, /^situs-event-bus: NOT_FOUND: dead letter 424242 does not exist$/);
});
