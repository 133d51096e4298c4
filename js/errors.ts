/** Stable error codes; `EventBusError.code` is always one of these. */
export type EventBusErrorCode =
  | 'INVALID_EVENT'
  | 'PAYLOAD_TOO_LARGE'
  | 'REJECTED'
  | 'FORBIDDEN'
  | 'DUPLICATE_EVENT'
  | 'STORE_UNAVAILABLE'
  | 'CLOSED'
  | 'INVALID_CONFIG'
  | 'NOT_FOUND';

const CODES: ReadonlySet<string> = new Set<EventBusErrorCode>([
  'INVALID_EVENT',
  'PAYLOAD_TOO_LARGE',
  'REJECTED',
  'FORBIDDEN',
  'DUPLICATE_EVENT',
  'STORE_UNAVAILABLE',
  'CLOSED',
  'INVALID_CONFIG',
  'NOT_FOUND',
]);

export class EventBusError extends Error {
  override readonly name = 'EventBusError';

  constructor(
    readonly code: EventBusErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The native layer reports errors as `CODE: message`; anything else is passed through. */
export function fromNative(err: unknown): unknown {
  // Not `instanceof Error`: native errors may come from another realm (vm contexts, jest).
  if (err instanceof EventBusError || typeof (err as Error | null)?.message !== 'string') return err;
  const match = /^([A-Z_]+): ([\s\S]*)$/.exec((err as Error).message);
  if (match && CODES.has(match[1])) {
    return new EventBusError(match[1] as EventBusErrorCode, match[2]);
  }
  return err;
}

/** Runs a native call, translating its errors. */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw fromNative(err);
  }
}

export function nativeSync<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw fromNative(err);
  }
}

export function messageOf(err: unknown): string {
  const message = (err as Error | null)?.message;
  if (typeof message === 'string') return message;
  try {
    return String(err);
  } catch {
    return 'unknown error';
  }
}
