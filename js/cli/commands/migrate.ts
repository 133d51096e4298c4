import type { Command } from 'commander';
import { type GlobalOptions, withBus } from '../open-bus';
import { Output } from '../output';
import { redact } from '../redact';
import { packageVersion } from '../version';

export function registerMigrate(program: Command, output: Output): void {
  program
    .command('migrate')
    .description('open the store, applying any pending migrations, and close it')
    .addHelpText(
      'after',
      '\nOpening a bus applies the migrations this version of the package embeds (PostgreSQL\n' +
        'serialises concurrent migrators with an advisory lock), so this is safe to run before\n' +
        'every deploy and to run twice.',
    )
    .action(async (_options: object, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const storeUrl = await withBus(globals, async (_bus, url) => url);
      await output.line(`migrations of @situs/event-bus ${packageVersion()} applied; the schema is up to date at ${redact(storeUrl, storeUrl)}`);
    });
}
