// Turns whatever went wrong into one line on stderr and an exit code: no stack traces, no
// passwords.
import { CommanderError } from 'commander';
import { EventBusError } from '../index';
import { ExitCode } from './exit-codes';
import { redact } from './redact';

/** A mistake in how the CLI was called that commander cannot see (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The exit code for an error (see EXIT_CODES_HELP). */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  if (err instanceof UsageError) return ExitCode.USAGE;
  if (err instanceof EventBusError) {
    switch (err.code) {
      case 'STORE_UNAVAILABLE':
      case 'INVALID_CONFIG':
        return ExitCode.STORE;
      case 'INVALID_EVENT':
        return ExitCode.USAGE;
      default:
        return ExitCode.FAILED;
    }
  }
  return ExitCode.FAILED;
}

function messageOf(err: unknown): string {
  const message = (err as Error | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/**
 * The line to print for `err`, or null when commander has printed it already (its usage errors,
 * and help or version output, which are not errors).
 */
export function failureLine(err: unknown, storeUrl?: string): string | null {
  if (err instanceof CommanderError) return null;
  if (err instanceof EventBusError) return redact(`situs-event-bus: ${err.code}: ${messageOf(err)}`, storeUrl);
  if (err instanceof UsageError) return redact(`situs-event-bus: ${messageOf(err)} (see --help)`, storeUrl);
  return redact(`situs-event-bus: error: ${messageOf(err).split('\n')[0]}`, storeUrl);
}
