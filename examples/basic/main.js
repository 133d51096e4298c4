// A small tour of @situs/event-bus on the embedded SQLite store (./event-bus.db, the default):
// subscribe with patterns, add a middleware, publish, query, scope to a tenant, close.
// Run with `npm run demo`; run it again and the positions continue where the last run stopped.
const { EventBus, EventType, EventBusError } = require('@situs/event-bus');

async function main() {
  const bus = await EventBus.open({
    // storeUrl defaults to EVENT_STORE_URL, else sqlite://./event-bus.db
    logger: (r) => {
      if (r.level === 'warn' || r.level === 'error') console.log(`  [${r.level}] ${r.message}`, r.fields);
    },
  });

  bus.subscribe('project.*', (e) => {
    console.log(`project handler  #${e.position} ${e.type}`, e.payload);
  });
  bus.subscribe('**', async (e) => {
    console.log(`audit handler    #${e.position} ${e.type} tenant=${e.tenantId ?? '-'}`);
  });
  bus.subscribe('plugin.installed', () => {
    throw new Error('this handler fails; the bus logs it and goes on');
  });

  // Middleware runs after the built-in validation and may enrich or reject events.
  bus.use((e) => ({ ...e, metadata: { ...e.metadata, source: 'demo' } }));

  const created = await bus.publish({
    type: EventType.PROJECT_CREATED,
    payload: { name: 'Apollo' },
    projectId: 'p-1',
    userId: 'u-7',
  });
  console.log(`published ${created.type} as ${created.id} at position ${created.position}`);

  await bus.publishMany([
    { type: EventType.PROJECT_STATUS_CHANGED, payload: { from: 'draft', to: 'live' }, projectId: 'p-1' },
    { type: EventType.PLUGIN_INSTALLED, payload: { plugin: 'maps' }, projectId: 'p-1' },
  ]);

  const acme = bus.forTenant('acme');
  await acme.publish({ type: EventType.USER_CREATED, payload: { email: 'ada@example.com' } });

  try {
    await bus.publish({ type: 'Not A Type', payload: {} });
  } catch (err) {
    if (err instanceof EventBusError) console.log(`rejected: ${err.code}: ${err.message}`);
  }

  const page = await bus.getEventsByProject('p-1', { order: 'desc', limit: 5 });
  console.log(`latest events of project p-1:`, page.events.map((e) => `#${e.position} ${e.type}`).join(', '));

  await bus.close();
  console.log('metrics', bus.metrics());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
