/** One message read from a text/event-stream response. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/**
 * A minimal Server-Sent Events reader over fetch, for the smoke run and the tests: it keeps what
 * arrived and lets a caller wait for the first message matching a predicate.
 */
export class SseClient {
  readonly messages: SseMessage[] = [];
  private readonly waiters = new Set<() => void>();
  private ended = false;

  private constructor(private readonly abort: AbortController) {}

  /** Resolves once the server answered 200 (the stream is open). */
  static async open(url: string): Promise<SseClient> {
    const abort = new AbortController();
    const response = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
    if (response.status !== 200 || !response.body) throw new Error(`SSE ${url} answered ${response.status}`);
    const client = new SseClient(abort);
    void client.read(response.body);
    return client;
  }

  /** The first message (already received or still to come) that `match` accepts. */
  waitFor(match: (m: SseMessage) => boolean, timeoutMs = 10_000): Promise<SseMessage> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.messages.find(match);
        if (found) resolve(found);
        else if (this.ended) reject(new Error('the SSE stream ended'));
        else return false;
        return true;
      };
      if (check()) return;
      // A hang guard only: the message normally arrives within milliseconds.
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no matching SSE message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (): void => {
        if (check()) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
        }
      };
      this.waiters.add(waiter);
    });
  }

  close(): void {
    this.abort.abort();
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.parse(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch {
      // Aborted by close(), or the server went away: either way the stream is over.
    }
    this.ended = true;
    this.notify();
  }

  private parse(block: string): void {
    const message: SseMessage = { event: 'message', data: '' };
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'event') message.event = value;
      else if (field === 'id') message.id = value;
    }
    if (data.length === 0) return; // comments and bare `id:` lines dispatch nothing
    message.data = data.join('\n');
    this.messages.push(message);
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
