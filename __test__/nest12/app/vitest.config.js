// Runs the Nest module's jest suite (compiled by tsconfig.suite.json into suite-build/) under
// vitest, in this ESM-only NestJS 12 app; see ../../contract/run.js, which copies the suite in,
// compiles it and checks the JSON report (every spec file ran, nothing skipped).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['suite-build/__test__/nest/**/*.spec.js'],
    // describe/it/expect/beforeAll… as globals, as jest has them.
    globals: true,
    environment: 'node',
    setupFiles: ['./vitest.setup.js'],
    // jest's defaults (5 s for tests and hooks); a file's jest.setTimeout(ms) sets both.
    testTimeout: 5_000,
    hookTimeout: 5_000,
    // A left-over .only would skip the rest of its file: refuse it.
    allowOnly: false,
    reporters: ['default', 'json'],
    outputFile: { json: 'suite-results.json' },
  },
});
