// Public typings of @situs/event-bus; the implementation is compiled from js/ into dist/.
export * from './dist/index';
