#!/usr/bin/env node
// The `situs-event-bus` bin. The exit code is set, not forced with process.exit, so that stdout
// is flushed to a pipe before Node exits.
import { ExitCode } from './exit-codes';
import { note } from './output';
import { runCli } from './program';
import { redact } from './redact';

/** The store URL given on the command line or in the environment, for masking its password. */
function givenStoreUrl(args: string[]): string | undefined {
  const at = args.findIndex((a) => a === '--store-url' || a.startsWith('--store-url='));
  if (at < 0) return process.env.EVENT_STORE_URL;
  return args[at].includes('=') ? args[at].slice(args[at].indexOf('=') + 1) : args[at + 1];
}

/** Anything that escaped the commands: one line, no stack trace. */
function fatal(err: unknown): void {
  const message = (err as Error | null)?.message;
  const text = typeof message === 'string' ? message.split('\n')[0] : String(err);
  note(redact(`situs-event-bus: error: ${text}`, givenStoreUrl(process.argv.slice(2))));
  process.exit(ExitCode.FAILED);
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

void runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
