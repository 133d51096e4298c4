// Drives bus-server.js (a bus and its SSE server in a child process) from a test.
import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

interface Reply {
  id?: number;
  ok?: boolean;
  value?: unknown;
  error?: string;
  ready?: boolean;
}

export interface PublishedJson {
  id: string;
  type: string;
  payload: unknown;
  timestamp: string;
  projectId?: string;
  tenantId?: string;
  position: number;
}

export interface EventInput {
  type: string;
  payload: unknown;
  projectId?: string;
  tenantId?: string;
}

export class BusProcess {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (reply: Reply) => {
      if (reply.id === undefined) return;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.value);
      else waiter?.reject(new Error(reply.error));
    });
    child.on('exit', (code) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`bus process exited (${code})`));
      this.pending.clear();
    });
  }

  /** Starts the child and waits until its bus is open. */
  static async start(): Promise<BusProcess> {
    const child = fork(path.join(__dirname, 'bus-server.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', (m: Reply) => (m.ready ? resolve() : reject(new Error('unexpected first message'))));
      child.once('exit', (code) => reject(new Error(`bus process exited before it was ready (${code})`)));
    });
    return new BusProcess(child);
  }

  private call<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** Starts the SSE server (port 0: any free port); resolves with its URL. */
  /** `auth`: an authorize hook that answers 401 unless the query has token=good (or after `allow()`). */
  async listen(options: { port?: number; cors?: boolean; auth?: boolean } = {}): Promise<string> {
    return (await this.call<{ url: string }>('listen', options)).url;
  }

  closeServer(): Promise<void> {
    return this.call('closeServer');
  }

  async publish(...events: EventInput[]): Promise<PublishedJson[]> {
    return this.call<PublishedJson[]>('publish', { events });
  }

  /** Archives every stored event (so an old last id gets `event: reset`). */
  async archive(): Promise<void> {
    await this.call('archive');
  }

  /** Lets every connection in from now on (see `listen({ auth })`). */
  allow(): Promise<void> {
    return this.call('allow');
  }

  metrics(): Promise<{ sseConnections: number; sseResets: number; authorizeCalls: number }> {
    return this.call('metrics');
  }

  async sseConnections(): Promise<number> {
    return (await this.metrics()).sseConnections;
  }

  /** Closes the server and the bus, and waits for the child to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.call('exit').catch(() => undefined);
    await exited;
  }
}

/** Polls an async condition until it holds (bounded). */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}
