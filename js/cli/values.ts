// Parsers for option and argument values: each turns the text into what the API takes, or
// throws commander's InvalidArgumentError (a usage error, exit 2) saying what was expected.
import { InvalidArgumentError } from 'commander';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** `30d`, `12h`, `15m`, `90s`, `500ms`, `2w`, or terms together (`1h30m`); in milliseconds. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(ms|s|m|h|d|w))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) total += Number(amount) * UNIT_MS[unit];
  return Number.isSafeInteger(total) ? total : undefined;
}

/** An ISO-8601 date or date-time (`2024-05-01`, `2024-05-01T12:00:00Z`). */
function parseIsoDate(text: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())) return undefined;
  const date = new Date(text.trim());
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * A point in time: an ISO-8601 date, or a duration meaning that long ago (`30d` is 30 days
 * before `now`).
 */
export function parseTime(text: string, now: () => Date = () => new Date()): Date {
  const ms = parseDuration(text);
  if (ms !== undefined) return new Date(now().getTime() - ms);
  const date = parseIsoDate(text);
  if (date) return date;
  throw new InvalidArgumentError(`expected a duration (30d, 12h, 15m, 90s) or an ISO-8601 date, got "${text}"`);
}

/** A whole number ≥ `min`. */
export function wholeNumber(min: number): (text: string) => number {
  return (text) => {
    const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number of at least ${min}, got "${text}"`);
    return n;
  };
}

export const positiveInteger = wholeNumber(1);

/** `--from`: `now`, `beginning`, or a position (delivery starts after it). */
export function parseFrom(text: string): 'now' | 'beginning' | number {
  if (text === 'now' || text === 'beginning') return text;
  try {
    return wholeNumber(0)(text);
  } catch {
    throw new InvalidArgumentError(`expected now, beginning or a position, got "${text}"`);
  }
}

/** Collects a repeatable option (`--type a --type b`) into a list. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
