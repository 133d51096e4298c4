import { EventBusError } from './errors';

/**
 * True when plain JSON.stringify represents `value` faithfully. A cheap walk (much faster than a
 * replacer, which takes V8 off its fast serialiser); false also for deep or cyclic structures and
 * custom toJSON, which the checked path below then handles.
 */
function plainJsonSafe(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (value === null) return true;
      if (depth > 32) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!plainJsonSafe(value[i], depth + 1)) return false;
        return true;
      }
      if (value instanceof Date) return true;
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
      for (const key of Object.keys(value)) {
        if (!plainJsonSafe((value as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** Thrown inside JSON.stringify's replacer; the slow path then finds and names the culprit. */
const NOT_JSON = new Error('not JSON-serialisable');

function replacer(_key: string, value: unknown): unknown {
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw NOT_JSON;
      return value;
    case 'bigint':
    case 'function':
    case 'symbol':
      throw NOT_JSON;
    default:
      return value;
  }
}

function describe(value: unknown): string | undefined {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? undefined : String(value);
    case 'bigint':
      return 'a BigInt';
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return undefined;
  }
}

function childPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`;
}

/** Finds the first value JSON cannot represent faithfully, as `path is <what>`. */
function findProblem(value: unknown, path: string, ancestors: object[]): string | undefined {
  const what = describe(value);
  if (what) return `${path || 'event'} is ${what}, which is not JSON-serialisable`;
  if (value === null || typeof value !== 'object') return undefined;
  if (ancestors.includes(value)) return `${path || 'event'} is a circular reference, which is not JSON-serialisable`;
  const withToJson = value as { toJSON?: (key: string) => unknown };
  if (typeof withToJson.toJSON === 'function') {
    const replaced = withToJson.toJSON('');
    return replaced === value ? undefined : findProblem(replaced, path, [...ancestors, value]);
  }
  const inner = [...ancestors, value];
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = findProblem(value[i], childPath(path, i), inner);
      if (problem) return problem;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    const problem = findProblem((value as Record<string, unknown>)[key], childPath(path, key), inner);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * JSON text of `value`, refusing what JSON would silently change or cannot hold (circular
 * references, BigInt, functions, symbols, NaN, ±Infinity) with INVALID_EVENT naming the field.
 * `undefined` properties are dropped, as JSON does. `root` names the value in messages ('' for a
 * single event, whose fields are then named bare: `payload.items[2]`).
 */
export function toJson(value: unknown, root: string): string {
  if (plainJsonSafe(value, 0)) return JSON.stringify(value);
  try {
    const json = JSON.stringify(value, replacer);
    if (json !== undefined) return json;
  } catch {
    // fall through to the slow path, which explains what went wrong
  }
  const problem = findProblem(value, root, []);
  throw new EventBusError('INVALID_EVENT', problem ?? `${root || 'event'} is not JSON-serialisable`);
}

interface WireEvent {
  timestamp: string | Date;
  [key: string]: unknown;
}

/** A `Date | string` option as the ISO-8601 text the core parses; other values pass through for the core (or the caller) to name. */
export function isoOf<T>(value: T | Date): T | string {
  return value instanceof Date ? value.toISOString() : value;
}

/** A copy of a parsed wire record with the named fields (ISO-8601 strings) as Dates; `null` stays `null`. */
export function withDates<T>(wire: object, fields: readonly string[]): T {
  const out: Record<string, unknown> = { ...wire };
  for (const field of fields) {
    const value = out[field];
    if (typeof value === 'string') out[field] = new Date(value);
  }
  return out as T;
}

/** Turns a parsed wire event into the public shape (timestamp as Date), in place. */
export function fromWire<T>(wire: WireEvent): T {
  wire.timestamp = new Date(wire.timestamp as string);
  return wire as unknown as T;
}

/** The fields a publisher (or a middleware's result) may set, nothing else. */
export function publishFields(event: Record<string, unknown>): Record<string, unknown> {
  return {
    id: event.id,
    type: event.type,
    payload: event.payload,
    projectId: event.projectId,
    tenantId: event.tenantId,
    userId: event.userId,
    metadata: event.metadata,
  };
}
