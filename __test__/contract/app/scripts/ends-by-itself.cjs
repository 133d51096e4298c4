// A script as users write them: it publishes without awaiting and never closes the bus. Node must
// stay up until the publish settles and its event is handled, then exit by itself.
const { EventBus } = require('@situs/event-bus');

EventBus.open({ storeUrl: 'memory:', logger: () => {} }).then((bus) => {
  bus.subscribe('a.*', async (e) => {
    await new Promise((r) => setTimeout(r, 50));
    console.log(`handled ${e.position}`);
  });
  for (let i = 0; i < 3; i++) bus.publish({ type: 'a.b', payload: i }).then((e) => console.log(`settled ${e.position}`));
  // Another beforeExit listener (as test runners and process managers install) must not see an
  // idle loop while the publishes are pending.
  process.on('beforeExit', () => console.log('beforeExit'));
});
