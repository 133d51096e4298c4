/**
 * Holds Node's event loop open while the package has work a caller is waiting for, the way a
 * pending socket read or `fs` request does: one ref'd handle while any hold is taken, none (and no
 * cost) otherwise. The native callbacks that bring results back are weak, so without a hold an
 * awaited `publish` would let Node exit (or make `node --test` cancel the test) before it settles;
 * with one, an idle bus still never keeps Node alive.
 *
 * Holds are taken and released on the JS thread only: when the first publish of a bus is made and
 * its last one settles, and when committed events start and stop waiting for their handlers.
 */
let holds = 0;
let handle: ReturnType<typeof setInterval> | undefined;

/** Takes one hold; Node stays alive until every hold is released. */
export function hold(): void {
  if (holds++ === 0) {
    // One long timer, created once, ref'd and unref'd: cheaper than a timer per hold.
    handle ??= setInterval(() => undefined, 1 << 30);
    handle.ref();
  }
}

/** Releases one hold taken with `hold()`. */
export function release(): void {
  if (holds > 0 && --holds === 0) handle?.unref();
}
