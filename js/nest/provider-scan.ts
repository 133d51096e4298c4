import { EventBusError } from '../errors';

/** The parts of Nest's `InstanceWrapper` used here (not imported: it is a deep import). */
export interface Wrapper {
  instance: unknown;
  metatype: unknown;
  isAlias: boolean;
  isTransient: boolean;
  isDependencyTreeStatic(): boolean;
}

/**
 * Refuses a request-scoped or transient provider (or one depending on such): bus handlers live as
 * long as the app, so they need the one singleton instance. `what` names the decorated thing.
 */
export function refuseScoped(wrapper: Wrapper, what: string): void {
  if (!wrapper.isTransient && wrapper.isDependencyTreeStatic()) return;
  const className = (wrapper.metatype as { name: string }).name;
  throw new EventBusError(
    'INVALID_CONFIG',
    `${what}: ${className} is request-scoped or transient (or depends on one); bus handlers need a singleton provider`,
  );
}
