/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/__test__'],
  testMatch: ['**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/__test__/tsconfig.json' }],
  },
  // Tests import the package by its name, as users do; it resolves to the built package.
  moduleNameMapper: {
    '^@situs/event-bus$': '<rootDir>/dist/index.js',
  },
};
