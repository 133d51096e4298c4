// mocha, CommonJS.
const contract = require('../contract.cjs');

for (const { name, run } of contract(require('@situs/event-bus'))) it(name, run);
