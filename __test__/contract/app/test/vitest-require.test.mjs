// vitest, the package loaded with require (vitest itself is ESM-only).
import { createRequire } from 'node:module';
import { test } from 'vitest';
import contract from '../contract.cjs';

const require = createRequire(import.meta.url);
for (const { name, run } of contract(require('@situs/event-bus'))) test(name, run);
