// The specs in __test__/nest/ are jest specs (the repository runs them on Nest 11 with jest and
// ts-jest). Here vitest runs the same files with `globals: true`: describe, it, test, expect and
// the hooks are vitest's, which follow jest's API. This file maps the jest object's few APIs the
// specs use onto vi, with jest's meaning:
//
//   jest.setTimeout(ms)   the file's test and hook timeout (vi.setConfig, reset after the file);
//                         call it at the top of the file, before the tests, as jest's docs say
//   jest.fn / jest.spyOn  vi.fn / vi.spyOn (same .mock.calls, mockReturnValue, mockResolvedValue…)
//   jest.clearAllMocks / resetAllMocks / restoreAllMocks   the vi ones
//
// Any other jest.* throws, naming itself, so a spec never half-runs here: map it below (when vi
// has the same meaning) or write the spec without it.
import { vi } from 'vitest';

const mapped = {
  setTimeout(ms) {
    vi.setConfig({ testTimeout: ms, hookTimeout: ms });
    return jest;
  },
  fn: (...args) => vi.fn(...args),
  spyOn: (...args) => vi.spyOn(...args),
  clearAllMocks() {
    vi.clearAllMocks();
    return jest;
  },
  resetAllMocks() {
    vi.resetAllMocks();
    return jest;
  },
  restoreAllMocks() {
    vi.restoreAllMocks();
    return jest;
  },
};

const jest = new Proxy(mapped, {
  get(target, name) {
    if (typeof name !== 'string' || Object.hasOwn(target, name)) return target[name];
    throw new Error(`jest.${name} is not mapped onto vitest: add it to __test__/nest12/app/vitest.setup.js, or write the spec without it`);
  },
});
globalThis.jest = jest;
