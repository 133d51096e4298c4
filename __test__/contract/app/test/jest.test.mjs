// jest, ESM (node --experimental-vm-modules).
import { test } from '@jest/globals';
import * as bus from '@situs/event-bus';
import contract from '../contract.cjs';

for (const { name, run } of contract(bus)) test(name, run);
