import { fromNative } from './errors';
import { hold, release } from './keep-alive';
import type { NativeBus } from './native';

type Settler = { resolve: (wire: unknown) => void; reject: (err: unknown) => void };

/**
 * `publish` calls in flight on one native bus. Each gets a number; the native side settles them
 * in batches through one callback (`[[id, event], [id, null, "CODE: message"], …]`), which is far
 * cheaper than a native promise per call. The callback is weak, so while any publish is pending the
 * queue takes a keep-alive hold (as a pending socket read would), released when the last settles.
 *
 * Once a batch's callers have run (at `setImmediate`, after their promise reactions), the native
 * side is told: until then it expects them to publish again and holds its next commit for them.
 */
export class PublishQueue {
  private next = 1;
  private readonly pending = new Map<number, Settler>();
  private readonly drained: Array<() => void> = [];
  /** Batches settled since the native side was last told. */
  private unreported = 0;

  constructor(private readonly nativeBus: NativeBus) {
    nativeBus.setPublishSink((batch: string) => this.settle(batch));
  }

  /** Resolves with the stored event as parsed from the wire. */
  publish(eventJson: string, tenantId: string | null): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.next;
      this.next = id >= 0x7fffffff ? 1 : id + 1;
      try {
        this.nativeBus.publish(id, eventJson, tenantId);
      } catch (err) {
        reject(fromNative(err));
        return;
      }
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) hold();
    });
  }

  /** Resolves once every pending publish has settled (Node is held open meanwhile). */
  drain(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private reportSettled(): void {
    const batches = this.unreported;
    this.unreported = 0;
    this.nativeBus.publishesSettled(batches);
  }

  private settle(batch: string): void {
    const waiting = this.pending.size;
    if (this.unreported++ === 0) setImmediate(() => this.reportSettled());
    const results = JSON.parse(batch) as Array<[number, unknown, string?]>;
    for (const [id, wire, error] of results) {
      const settler = this.pending.get(id);
      if (settler === undefined) continue;
      this.pending.delete(id);
      if (error !== undefined) settler.reject(fromNative(new Error(error)));
      else settler.resolve(wire);
    }
    if (waiting > 0 && this.pending.size === 0) {
      release();
      for (const resolve of this.drained.splice(0)) resolve();
    }
  }
}

const queues = new WeakMap<NativeBus, PublishQueue>();

/** Resolves once a bus's pending publishes have settled. */
export function drainPublishes(nativeBus: NativeBus): Promise<void> {
  return queues.get(nativeBus)?.drain() ?? Promise.resolve();
}

/** The queue of a native bus, shared by the bus and its tenant handles. */
export function publishQueue(nativeBus: NativeBus): PublishQueue {
  let queue = queues.get(nativeBus);
  if (queue === undefined) {
    queue = new PublishQueue(nativeBus);
    queues.set(nativeBus, queue);
  }
  return queue;
}
