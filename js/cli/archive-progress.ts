// How `archive` shows its steps: a progress bar on a terminal, plain lines when piped (for logs
// and scripts).
import { Presets, SingleBar } from 'cli-progress';
import type { Output } from './output';

export interface ArchiveProgress {
  /** Archiving starts; at most `estimate` events are older than the cutoff. */
  start(estimate: number): void;
  /** A step moved `moved` events, `total` so far. */
  step(moved: number, total: number): Promise<void>;
  /** Done: `total` moved. */
  finish(total: number): void;
}

/** One line per step: `archived 1000 (3000 so far)`. */
export function plainProgress(output: Output): ArchiveProgress {
  return {
    start: () => undefined,
    step: (moved, total) => output.line(`archived ${moved} (${total} so far)`),
    finish: () => undefined,
  };
}

/** A bar drawn in place on the terminal of `output`, up to the estimate (an upper bound). */
export function barProgress(output: Output): ArchiveProgress {
  const bar = new SingleBar(
    {
      stream: output.stream,
      format: 'archiving [{bar}] {percentage}% | {value}/{total} events | {duration_formatted}',
      hideCursor: true,
      etaBuffer: 20,
    },
    Presets.shades_classic,
  );
  let started = false;
  return {
    start(estimate) {
      if (estimate > 0) {
        bar.start(estimate, 0);
        started = true;
      }
    },
    async step(_moved, total) {
      if (started) bar.update(Math.min(total, bar.getTotal()));
    },
    finish(total) {
      if (!started) return;
      // The estimate is an upper bound: the bar ends full at what really moved.
      bar.setTotal(total);
      bar.update(total);
      bar.stop();
    },
  };
}
