/** What the CLI's exit status means (also in `--help` and the README). */
export const ExitCode = {
  /** Done. */
  OK: 0,
  /** The operation failed: e.g. NOT_FOUND, or an unexpected error. */
  FAILED: 1,
  /** Usage: an unknown command or option, a missing or unparsable value, a value the bus refuses
   *  (INVALID_EVENT), or no store URL. */
  USAGE: 2,
  /** The store cannot be reached or refuses the configuration: STORE_UNAVAILABLE, INVALID_CONFIG. */
  STORE: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `
Exit codes:
  0  done
  1  the operation failed (e.g. NOT_FOUND: no such delivery or dead letter)
  2  usage error: unknown command or option, a bad or missing value, a value
     the bus refuses (INVALID_EVENT), no --store-url nor EVENT_STORE_URL
  3  the store is unreachable or refuses the configuration
     (STORE_UNAVAILABLE, INVALID_CONFIG: bad URL, unknown role or database)

Results go to stdout (JSON lines for events and lists); progress and errors
to stderr, one line per error, passwords masked.`;
