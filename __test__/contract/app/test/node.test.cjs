// node --test, CommonJS.
const test = require('node:test');
const contract = require('../contract.cjs');

for (const { name, run } of contract(require('@situs/event-bus'))) test(name, run);
