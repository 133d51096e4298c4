// A bus with its SSE server in a child process, driven by the react tests over IPC. The jsdom
// tests never load the native addon themselves (it does not load under jsdom): they ask this
// process to listen, publish, report metrics and close the server.
//
//   request:  { id, cmd: 'listen' | 'closeServer' | 'publish' | 'archive' | 'allow' | 'metrics' | 'exit', ...args }
//   response: { id, ok: true, value } | { id, ok: false, error }
const { EventBus } = require('../../dist/index.js');

let bus;
let server = null;
// With `listen({ auth: true })`, connections are refused (401) unless their query has
// token=good, or until `allow` is called.
let allowAll = false;
let authorizeCalls = 0;

const commands = {
  async listen({ port = 0, cors = false, auth = false }) {
    if (server) throw new Error('already listening');
    const authorize = auth
      ? ({ query }) => {
          authorizeCalls++;
          return allowAll || query.token === 'good' ? {} : null;
        }
      : undefined;
    server = await bus.sse.listen({ port, host: '127.0.0.1', path: '/events', cors, authorize });
    return { url: server.url };
  },
  async closeServer() {
    if (server) await server.close();
    server = null;
    return null;
  },
  async publish({ events }) {
    return JSON.parse(JSON.stringify(await bus.publishMany(events)));
  },
  async archive() {
    return bus.archive({ olderThan: new Date(Date.now() + 60_000) });
  },
  async allow() {
    allowAll = true;
    return null;
  },
  async metrics() {
    return { ...bus.metrics(), authorizeCalls };
  },
  async exit() {
    if (server) await server.close();
    server = null;
    await bus.close();
    setImmediate(() => process.exit(0));
    return null;
  },
};

async function main() {
  bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
  process.on('message', async (message) => {
    try {
      const value = await commands[message.cmd](message);
      process.send({ id: message.id, ok: true, value });
    } catch (error) {
      process.send({ id: message.id, ok: false, error: String((error && error.stack) || error) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
