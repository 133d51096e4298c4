import { fromNative } from './errors';
import { recheckDeliveries } from './delivery-hold';
import { hold, release } from './keep-alive';
import type { NativeBus } from './native';

/** Where a publish's result goes: the stored event as parsed from the wire, or the error. */
export type Settler = { resolve: (wire: unknown) => void; reject: (err: unknown) => void };

/** A publish not yet handed to the native side; `id` has the QUIET bit when no event is wanted. */
type Queued = { id: number; json: string; tenantId: string | null };

/** Asks the native side to answer a publish without the stored event (see `publishQuietly`). */
const QUIET = 0x80000000;

/**
 * Publishes queued past this many cross at once, without waiting for the end of the tick, so the
 * native side starts on a long burst while JS is still publishing.
 */
const CROSS_AT = 512;

/**
 * `publish` calls in flight on one native bus. Each gets a number; the publishes made in one tick
 * cross to the native side together (one call for up to CROSS_AT; each event is still stored or
 * refused on its own, in publish order), and the native side settles them in batches through one
 * callback (`[[id, event], [id], [id, null, "CODE: message"], …]`), which is far cheaper than a
 * crossing and a native promise per call. The callback is weak, so while any publish is pending
 * the queue takes a keep-alive hold (as a pending socket read would), released when the last
 * settles.
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
  /** Publishes not handed over yet (see `flush`). */
  private queued: Queued[] = [];

  constructor(private readonly nativeBus: NativeBus) {
    nativeBus.setPublishSink((batch: string) => this.settle(batch));
  }

  /** Resolves with the stored event as parsed from the wire. */
  publish(eventJson: string, tenantId: string | null): Promise<unknown> {
    return new Promise((resolve, reject) => this.enqueue(eventJson, tenantId, false, { resolve, reject }));
  }

  /**
   * For fire-and-forget callers: `settler` gets nothing on success (the stored event is neither
   * rendered nor parsed) or the error; no promise is made.
   */
  publishQuietly(eventJson: string, tenantId: string | null, settler: Settler): void {
    this.enqueue(eventJson, tenantId, true, settler);
  }

  private enqueue(eventJson: string, tenantId: string | null, quiet: boolean, settler: Settler): void {
    const id = this.next;
    this.next = id >= 0x7fffffff ? 1 : id + 1;
    this.pending.set(id, settler);
    if (this.pending.size === 1) hold();
    this.queued.push({ id: quiet ? (id | QUIET) >>> 0 : id, json: eventJson, tenantId });
    // Alone in flight (a caller awaiting each publish): nothing to wait for, cross now. Else
    // at nextTick, which runs after this tick's promise callbacks too, so a burst made from
    // them still crosses together.
    if (this.pending.size === 1 || this.queued.length >= CROSS_AT) this.flush();
    else if (this.queued.length === 1) process.nextTick(() => this.flush());
  }

  /** Hands the queued publishes to the native side now (`close` calls it, so they are drained). */
  flush(): void {
    const queued = this.queued;
    if (queued.length === 0) return;
    this.queued = [];
    // One call per run of publishes with the same tenant, in publish order.
    for (let start = 0; start < queued.length; ) {
      const tenantId = queued[start].tenantId;
      let end = start + 1;
      while (end < queued.length && queued[end].tenantId === tenantId) end++;
      const run = queued.slice(start, end);
      start = end;
      const ids = Uint32Array.from(run, (q) => q.id);
      try {
        // One string crosses far cheaper than an array of them; JSON text has no raw newline.
        this.nativeBus.publishBatch(ids, run.map((q) => q.json).join('\n'), tenantId);
      } catch (err) {
        const error = fromNative(err);
        for (const q of run) this.settleOne((q.id & ~QUIET) >>> 0, undefined, error);
        this.releaseIfIdle(true);
      }
    }
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
    if (this.unreported++ === 0) setImmediate(() => this.reportSettled());
    const results = JSON.parse(batch) as Array<[number, unknown?, string?]>;
    const waiting = this.pending.size > 0;
    for (const [id, wire, error] of results) {
      this.settleOne(id, wire, error === undefined ? undefined : fromNative(new Error(error)));
    }
    this.releaseIfIdle(waiting);
  }

  private settleOne(id: number, wire: unknown, error: unknown): void {
    const settler = this.pending.get(id);
    if (settler === undefined) return;
    this.pending.delete(id);
    if (error !== undefined) settler.reject(error);
    else settler.resolve(wire);
  }

  /** Releases the hold once nothing is pending (`waiting`: something was before). */
  private releaseIfIdle(waiting: boolean): void {
    if (waiting && this.pending.size === 0) {
      // Deliveries of what just committed are counted already: hold for them before letting go.
      recheckDeliveries(this.nativeBus);
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

/** Hands a bus's queued publishes to the native side now (before it closes). */
export function flushPublishes(nativeBus: NativeBus): void {
  queues.get(nativeBus)?.flush();
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
