import { Command, Option } from 'commander';
import type { EventQuery } from '../../index';
import { type GlobalOptions, withBus } from '../open-bus';
import { note, Output } from '../output';
import { collect, parseTime, positiveInteger, wholeNumber } from '../values';

/** The store's largest page (`getEvents` limit). */
const MAX_PAGE = 1000;

interface QueryOptions {
  type?: string[];
  project?: string;
  tenant?: string;
  user?: string;
  since?: Date;
  until?: Date;
  after?: number;
  cursor?: string;
  limit: number;
  order: 'asc' | 'desc';
  archived?: boolean;
}

/** The `getEvents` filter of the options, without paging. */
export function filterOf(options: QueryOptions): EventQuery {
  const filter: EventQuery = { order: options.order };
  if (options.type && options.type.length > 0) filter.types = options.type;
  if (options.project !== undefined) filter.projectId = options.project;
  if (options.tenant !== undefined) filter.tenantId = options.tenant;
  if (options.user !== undefined) filter.userId = options.user;
  if (options.since !== undefined) filter.since = options.since;
  if (options.until !== undefined) filter.until = options.until;
  if (options.archived) filter.includeArchived = true;
  return filter;
}

export function registerQuery(program: Command, output: Output): void {
  program
    .command('query')
    .description('print stored events, one JSON line each, following pages up to --limit')
    .option('--type <pattern>', 'only events of this type or pattern (* one segment, ** the rest); repeatable', collect)
    .option('--project <id>', 'only events of this project')
    .option('--tenant <id>', 'only events of this tenant')
    .option('--user <id>', 'only events of this user')
    .option('--since <time>', 'events at or after this time: ISO-8601, or a duration ago (30d, 12h, 15m)', (v) => parseTime(v))
    .option('--until <time>', 'events before this time: ISO-8601, or a duration ago', (v) => parseTime(v))
    .addOption(new Option('--after <position>', 'events after this position (exclusive)').argParser(wholeNumber(0)).conflicts('cursor'))
    .option('--cursor <cursor>', 'continue where an earlier query stopped (the cursor it printed on stderr)')
    .addOption(new Option('--limit <n>', 'at most this many events in all').default(100).argParser(positiveInteger))
    .addOption(new Option('--order <order>', 'by position').choices(['asc', 'desc']).default('asc'))
    .option('--archived', 'also archived events')
    .addHelpText(
      'after',
      '\nWhen --limit stops the output before the last page, the cursor to continue with is\n' +
        'printed on stderr.\n\nExample:\n  situs-event-bus query --type "project.*" --since 24h --limit 1000 > events.jsonl',
    )
    .action(async (options: QueryOptions, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      await withBus(globals, async (bus) => {
        const filter = filterOf(options);
        let remaining = options.limit;
        let cursor = options.cursor;
        let afterPosition = options.after;
        while (remaining > 0 && !output.closed) {
          const page = await bus.getEvents({
            ...filter,
            limit: Math.min(remaining, MAX_PAGE),
            ...(cursor !== undefined ? { cursor } : {}),
            ...(afterPosition !== undefined ? { afterPosition } : {}),
          });
          for (const event of page.events) await output.json(event);
          remaining -= page.events.length;
          if (page.nextCursor === null || page.events.length === 0) return;
          cursor = page.nextCursor;
          afterPosition = undefined;
        }
        if (cursor !== undefined && !output.closed) note(`stopped at --limit ${options.limit}; continue with --cursor ${cursor}`);
      });
    });
}
