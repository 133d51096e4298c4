import { EventBusError } from '../errors';

/** Injection token of a module's bus name: `null` for the default bus, else `forRoot({ name })`. */
export const BUS_NAME = Symbol('situs:event-bus:name');

/** Checks the `name` extra of `forRoot` / `forRootAsync`. */
export function checkBusName(name: unknown): string | null {
  if (name === undefined || name === null) return null;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new EventBusError(
      'INVALID_CONFIG',
      `option name must be 1 to 64 letters, digits, '_', '.' or '-', got ${JSON.stringify(name)}`,
    );
  }
  return name;
}
