import type { Command } from 'commander';
import type { EventBus } from '../../index';
import { type GlobalOptions, withBus } from '../open-bus';
import { Output } from '../output';
import { flatten, formatTable } from '../table';

/** Dead letters counted at most (one `deadLetters` page). */
const DEAD_LETTER_PAGE = 1000;

/** What `stats` shows: the bus's metrics, and a few facts read from the store. */
export async function statsOf(bus: EventBus): Promise<Record<string, unknown>> {
  // The outbox and group lag in the metrics are read from the store: read them now.
  await bus.refreshMetrics();
  const [newest, oldestLive, endpoints, dead] = await Promise.all([
    bus.getEvents({ order: 'desc', limit: 1, includeArchived: true }),
    bus.getEvents({ order: 'asc', limit: 1 }),
    bus.webhooks.list(),
    bus.deadLetters({ status: 'dead', limit: DEAD_LETTER_PAGE }),
  ]);
  return {
    metrics: bus.metrics(),
    store: {
      headPosition: newest.events[0]?.position ?? 0,
      newestEventAt: newest.events[0]?.timestamp ?? null,
      oldestLiveEventAt: oldestLive.events[0]?.timestamp ?? null,
    },
    webhooks: {
      endpoints: endpoints.length,
      disabled: endpoints.filter((e) => !e.enabled).length,
    },
    deadLetters: {
      dead: dead.length < DEAD_LETTER_PAGE ? dead.length : `${DEAD_LETTER_PAGE}+`,
    },
  };
}

export function registerStats(program: Command, output: Output): void {
  program
    .command('stats')
    .description("the bus's metrics() and the store's head, webhook endpoints and dead letters, as a table")
    .option('--json', 'one JSON object instead of the table')
    .addHelpText(
      'after',
      '\nmetrics.* are the counters of the bus this command opens (they count what this process\n' +
        'does, so they start at zero; each application instance has its own), except the webhook\n' +
        'outbox (metrics.webhookPending, …) and group lag (metrics.groups), read from the store like\n' +
        'store.*, webhooks.* and deadLetters.*, which every instance shares.',
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const stats = await withBus(globals, statsOf);
      if (options.json) await output.json(stats);
      else await output.line(formatTable(flatten(stats)));
    });
}
