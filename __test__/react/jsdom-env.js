// jsdom, plus what npm `eventsource` (v3+, fetch-based) needs and jsdom lacks: Node's fetch and
// TextDecoder. jsdom's AbortSignal is not one that Node's fetch accepts, so abort is bridged.
const { TestEnvironment } = require('jest-environment-jsdom');

class JsdomWithFetch extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    const g = this.global;
    g.fetch = (input, init = {}) => {
      const { signal, ...rest } = init;
      if (!signal) return fetch(input, rest);
      const controller = new AbortController();
      if (signal.aborted) controller.abort();
      else signal.addEventListener('abort', () => controller.abort(), { once: true });
      return fetch(input, { ...rest, signal: controller.signal });
    };
    g.TextDecoder = TextDecoder;
    g.TextEncoder = TextEncoder;
  }
}

module.exports = JsdomWithFetch;
