/** @type {import('jest').Config} */
module.exports = {
  // The addon does not load under jsdom: only the React tests (__test__/react) choose a jsdom
  // environment, per file, and they reach the bus through a child process.
  testEnvironment: 'node',
  roots: ['<rootDir>/__test__'],
  testMatch: ['**/*.spec.ts', '**/*.spec.tsx'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/__test__/tsconfig.json' }],
  },
  // Tests import the package by its name, as users do; it resolves to the built package.
  moduleNameMapper: {
    '^@situs/event-bus$': '<rootDir>/dist/index.js',
    '^@situs/event-bus/react$': '<rootDir>/dist/react/index.js',
    '^@situs/event-bus/nest$': '<rootDir>/dist/nest/index.js',
    '^@situs/event-bus/nest/health$': '<rootDir>/dist/nest/health.js',
    '^@situs/event-bus/nest/cqrs$': '<rootDir>/dist/nest/cqrs/index.js',
  },
};
