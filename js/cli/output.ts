// Where results go: stdout, one JSON document per line for events and lists, waiting when the
// reader is slower (backpressure). A reader that goes away (`| head`) ends the output quietly.
import { once } from 'node:events';
import type { Writable } from 'node:stream';

export class Output {
  private gone = false;
  private readonly goneListeners: Array<() => void> = [];

  constructor(readonly stream: Writable & { isTTY?: boolean } = process.stdout) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      this.gone = true;
      for (const listener of this.goneListeners.splice(0)) listener();
    });
  }

  /** True once the reader has closed the pipe: nothing more is written. */
  get closed(): boolean {
    return this.gone;
  }

  get isTTY(): boolean {
    return this.stream.isTTY === true;
  }

  /** Called once when the reader goes away. */
  onClosed(listener: () => void): void {
    if (this.gone) listener();
    else this.goneListeners.push(listener);
  }

  /** Writes a line of text; resolves when the stream can take more. */
  async line(text: string): Promise<void> {
    if (this.gone) return;
    if (!this.stream.write(`${text}\n`)) {
      await Promise.race([once(this.stream, 'drain'), new Promise<void>((resolve) => this.onClosed(resolve))]);
    }
  }

  /** Writes `value` as one line of JSON (dates as ISO-8601 strings). */
  json(value: unknown): Promise<void> {
    return this.line(JSON.stringify(value));
  }
}

/** Diagnostics (progress notes, warnings): stderr, never mixed into the results. */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}
