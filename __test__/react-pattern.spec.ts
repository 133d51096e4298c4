// The browser-side pattern matcher of @situs/event-bus/react agrees with the bus's (src/pattern.rs)
// and with the bus itself: every case is also checked against a real subscription.
import { compilePattern, matchesPattern } from '@situs/event-bus/react';
import { openBus, until } from './helpers';

const cases: [string, string, boolean][] = [
  ['project.created', 'project.created', true],
  ['project.created', 'project.updated', false],
  ['project.created', 'project.created.extra', false],
  ['project.*', 'project.created', true],
  ['project.*', 'project.a.b', false],
  ['project.*', 'user.created', false],
  ['*.created', 'user.created', true],
  ['*.created', 'user.deleted', false],
  ['*.*', 'a.b', true],
  ['*.*', 'a.b.c', false],
  ['project.**', 'project.created', true],
  ['project.**', 'project.a.b', true],
  ['project.#', 'project.a.b.c', true],
  ['project.**', 'projects.created', false],
  ['project.**', 'user.created', false],
  ['**', 'anything.at.all', true],
  ['#', 'a.b', true],
  ['a.*.**', 'a.b', true],
  ['a.*.**', 'a.b.c.d', true],
  ['project.created.**', 'project.created', true],
  ['project.created.**', 'project.created.v2', true],
  ['menu.item_updated', 'menu.item_updated', true],
  ['v2.*', 'v2.x', true],
];

test.each(cases)('%s vs %s → %s', (pattern, type, expected) => {
  expect(matchesPattern(pattern, type)).toBe(expected);
});

test('the bus routes exactly as the matcher says', async () => {
  const { bus } = await openBus();
  try {
    const types = [...new Set(cases.map(([, type]) => type))];
    const patterns = [...new Set(cases.map(([pattern]) => pattern))];
    const seen = new Map<string, string[]>(patterns.map((p) => [p, []]));
    const subs = patterns.map((p) => bus.subscribe(p, (e) => void seen.get(p)!.push(e.type)));
    await bus.publishMany(types.map((type) => ({ type, payload: null })));
    const expected = patterns.reduce((n, p) => n + types.filter((t) => compilePattern(p).matches(t)).length, 0);
    await until(() => [...seen.values()].reduce((n, list) => n + list.length, 0) >= expected, 'deliveries');
    for (const p of patterns) expect(seen.get(p)).toEqual(types.filter((t) => matchesPattern(p, t)));
    subs.forEach((s) => s.unsubscribe());
  } finally {
    await bus.close();
  }
});

test.each([
  ['', 'empty'],
  ['project..created', 'empty segment'],
  ['project.', 'empty segment'],
  ['project.**.created', 'last segment'],
  ['#.created', 'last segment'],
  ['Project.created', 'lowercase'],
  ['project.cre*', 'lowercase'],
  ['project.***', 'lowercase'],
])('%j is refused (%s)', (pattern, why) => {
  expect(() => compilePattern(pattern)).toThrow(why);
});
