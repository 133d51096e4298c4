import { Command, Option } from 'commander';
import type { DeadLetterQuery } from '../../index';
import { type GlobalOptions, withBus } from '../open-bus';
import { Output } from '../output';
import { positiveInteger } from '../values';

interface ListOptions {
  group?: string;
  status?: DeadLetterQuery['status'];
  limit?: number;
}

export function registerDeadLetters(program: Command, output: Output): void {
  const deadLetters = program.command('dead-letters').description('events consumer groups gave up on');

  deadLetters
    .command('list')
    .description('dead letters, newest first, one JSON line each (with the event and the last error)')
    .option('--group <name>', "only this consumer group's")
    .addOption(new Option('--status <status>', 'only dead letters in this state').choices(['dead', 'retrying', 'resolved']))
    .addOption(new Option('--limit <n>', 'at most this many (1 to 1000, default 100)').argParser(positiveInteger))
    .action(async (options: ListOptions, command: Command) => {
      await withBus(command.optsWithGlobals<GlobalOptions>(), async (bus) => {
        const query: DeadLetterQuery = {};
        if (options.group !== undefined) query.group = options.group;
        if (options.status !== undefined) query.status = options.status;
        if (options.limit !== undefined) query.limit = options.limit;
        for (const letter of await bus.deadLetters(query)) await output.json(letter);
      });
    });

  deadLetters
    .command('retry')
    .description('send a dead letter back to its group: a member handles it again')
    .argument('<id>', 'the dead letter', positiveInteger)
    .addHelpText(
      'after',
      "\nA running member of the group (in any instance) handles it with the group's maxAttempts\n" +
        "and backoff; its status becomes 'resolved' or 'dead' again.",
    )
    .action(async (id: number, _options: object, command: Command) => {
      await withBus(command.optsWithGlobals<GlobalOptions>(), (bus) => bus.retryDeadLetter(id));
      await output.line(`dead letter ${id} sent back to its group`);
    });
}
