// The `situs-event-bus` command line: global options, the commands, and how failures end.
import { Command, Option } from 'commander';
import { registerArchive } from './commands/archive';
import { registerDeadLetters } from './commands/dead-letters';
import { registerMigrate } from './commands/migrate';
import { registerQuery } from './commands/query';
import { registerStats } from './commands/stats';
import { registerTail } from './commands/tail';
import { registerWebhooks } from './commands/webhooks';
import { EXIT_CODES_HELP, ExitCode } from './exit-codes';
import { exitCodeOf, failureLine } from './failure';
import { note, Output } from './output';
import { packageVersion } from './version';

export function buildProgram(output: Output): Command {
  const program = new Command('situs-event-bus')
    .description('Operate a @situs/event-bus store: migrate, read and follow events, webhooks, dead letters, archiving.')
    .version(packageVersion(), '-V, --version')
    .addOption(
      new Option('--store-url <url>', 'the store: postgres://…, sqlite://path (memory: is empty in a new process)').env('EVENT_STORE_URL'),
    )
    .option('--verbose', "also the core's info and debug log records, on stderr")
    // Each command's --help lists --store-url and --verbose too.
    .configureHelp({ showGlobalOptions: true })
    // Usage errors are thrown (exit 2 below), not ended with commander's exit code 1.
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('afterAll', EXIT_CODES_HELP);
  registerMigrate(program, output);
  registerTail(program, output);
  registerQuery(program, output);
  registerStats(program, output);
  registerWebhooks(program, output);
  registerDeadLetters(program, output);
  registerArchive(program, output);
  return program;
}

/** Runs the CLI on `args` (without node and the script); resolves with the exit code. */
export async function runCli(args: string[], output: Output = new Output()): Promise<ExitCode> {
  const program = buildProgram(output);
  try {
    await program.parseAsync(args, { from: 'user' });
    return ExitCode.OK;
  } catch (err) {
    const line = failureLine(err, program.opts<{ storeUrl?: string }>().storeUrl);
    if (line !== null) note(line);
    if (program.opts<{ verbose?: boolean }>().verbose && err instanceof Error && err.stack) note(err.stack);
    return exitCodeOf(err);
  }
}
