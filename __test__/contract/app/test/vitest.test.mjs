// vitest, ESM import.
import { test } from 'vitest';
import * as bus from '@situs/event-bus';
import contract from '../contract.cjs';

for (const { name, run } of contract(bus)) test(name, run);
