import { hold, release } from './keep-alive';
import type { NativeBus } from './native';

const checks = new WeakMap<NativeBus, () => void>();

/**
 * Handler callbacks are weak, so an idle bus never holds Node open. While committed events wait for
 * their handlers the bus takes a keep-alive hold, so a script that publishes and ends still has
 * every event it committed handled before Node exits. The core reports each time its count of
 * pending deliveries leaves or reaches zero; the count is read here, as calls may cross.
 */
export function holdWhileDelivering(nativeBus: NativeBus): { stop(): void } {
  let held = false;
  const update = (busy: boolean): void => {
    if (busy === held) return;
    held = busy;
    if (busy) hold();
    else release();
  };
  const check = (): void => update(!nativeBus.closed && nativeBus.pendingDeliveries > 0);
  nativeBus.watchDeliveries(check);
  checks.set(nativeBus, check);
  return {
    stop: () => {
      checks.delete(nativeBus);
      update(false);
    },
  };
}

/**
 * Reads the pending deliveries now. The publish queue calls it before letting go of its own hold:
 * the core counts an event's deliveries before answering its publish, but its report of that count
 * travels on another callback, which Node may not run before it sees nothing holding it and exits.
 */
export function recheckDeliveries(nativeBus: NativeBus): void {
  checks.get(nativeBus)?.();
}
