import { Command, Option } from 'commander';
import type { EventBus } from '../../index';
import { type ArchiveProgress, barProgress, plainProgress } from '../archive-progress';
import { type GlobalOptions, withBus } from '../open-bus';
import { Output } from '../output';
import { parseTime, positiveInteger } from '../values';

interface ArchiveOptions {
  olderThan: Date;
  batchSize: number;
}

/**
 * At most how many live events are older than `cutoff`: the positions of the oldest and the
 * newest of them bound the count (positions increase; some in between may be newer or gone).
 */
export async function archiveEstimate(bus: EventBus, cutoff: Date): Promise<number> {
  const [oldest, newest] = await Promise.all([
    bus.getEvents({ until: cutoff, order: 'asc', limit: 1 }),
    bus.getEvents({ until: cutoff, order: 'desc', limit: 1 }),
  ]);
  const first = oldest.events[0]?.position;
  const last = newest.events[0]?.position;
  return first === undefined || last === undefined ? 0 : last - first + 1;
}

/** Archives in steps of `batchSize` until a step moves fewer; returns how many moved. */
export async function archiveInSteps(bus: EventBus, cutoff: Date, batchSize: number, progress: ArchiveProgress): Promise<number> {
  progress.start(await archiveEstimate(bus, cutoff));
  let total = 0;
  for (;;) {
    const { archived } = await bus.archive({ olderThan: cutoff, limit: batchSize });
    total += archived;
    if (archived > 0) await progress.step(archived, total);
    if (archived < batchSize) break;
  }
  progress.finish(total);
  return total;
}

export function registerArchive(program: Command, output: Output): void {
  program
    .command('archive')
    .description('move events older than a cutoff to the archive (getEvents/query --archived still read them)')
    .addOption(
      new Option('--older-than <age>', 'the cutoff: a duration ago (30d, 12h, 15m) or an ISO-8601 date')
        .argParser((v) => parseTime(v))
        .makeOptionMandatory(),
    )
    .addOption(new Option('--batch-size <n>', 'events per step').default(1000).argParser(positiveInteger))
    .addHelpText(
      'after',
      '\nOn a terminal a progress bar shows the steps; piped, each step is a line\n' +
        '("archived 1000 (3000 so far)"). The last line is the count. Safe to interrupt and to\n' +
        're-run, and to run beside the application.\n\nExample:\n  situs-event-bus archive --older-than 90d',
    )
    .action(async (options: ArchiveOptions, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const cutoff = options.olderThan;
      const progress = output.isTTY ? barProgress(output) : plainProgress(output);
      const total = await withBus(globals, (bus) => archiveInSteps(bus, cutoff, options.batchSize, progress));
      await output.line(`archived ${total} ${total === 1 ? 'event' : 'events'} older than ${cutoff.toISOString()}`);
    });
}
