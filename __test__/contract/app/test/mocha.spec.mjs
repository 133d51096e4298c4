// mocha, ESM.
import * as bus from '@situs/event-bus';
import contract from '../contract.cjs';

for (const { name, run } of contract(bus)) it(name, run);
