/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  // The files are plain JS as users write them: no Babel.
  transform: {},
  // A guard against a hang, not a timing assertion.
  testTimeout: 60_000,
};
