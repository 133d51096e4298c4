import { Command, Option } from 'commander';
import type { SubscribeOptions } from '../../index';
import { type GlobalOptions, withBus } from '../open-bus';
import { note, Output } from '../output';
import { untilStopped } from '../stop-signal';
import { collect, parseFrom } from '../values';

interface TailOptions {
  type?: string[];
  project?: string;
  tenant?: string;
  from: 'now' | 'beginning' | number;
}

export function registerTail(program: Command, output: Output): void {
  program
    .command('tail')
    .description('print events as they are committed, one JSON line each, until Ctrl-C')
    .option('--type <pattern>', 'only events of this type or pattern (* one segment, ** the rest); repeatable', collect)
    .option('--project <id>', 'only events of this project')
    .option('--tenant <id>', 'only events of this tenant')
    .addOption(
      new Option('--from <position>', 'where to start: now, beginning, or after a position').default('now').argParser(parseFrom),
    )
    .addHelpText('after', '\nSIGINT (Ctrl-C) or SIGTERM closes the bus and exits 0.\n\nExample:\n  situs-event-bus tail --type "order.*" --project p1 | jq .payload')
    .action(async (options: TailOptions, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      await withBus(globals, async (bus) => {
        const patterns = options.type && options.type.length > 0 ? options.type : ['**'];
        const subscribeOptions: SubscribeOptions = { from: options.from };
        if (options.project !== undefined) subscribeOptions.projectId = options.project;
        if (options.tenant !== undefined) subscribeOptions.tenantId = options.tenant;
        const subscription = bus.subscribe(patterns, (event) => output.json(event), subscribeOptions);
        try {
          const from = typeof options.from === 'number' ? `after position ${options.from}` : `from ${options.from}`;
          note(`tailing ${patterns.join(', ')} ${from} (Ctrl-C to stop)`);
          await untilStopped((stop) => output.onClosed(stop));
        } finally {
          subscription.unsubscribe();
        }
      });
    });
}
