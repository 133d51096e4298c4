import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { EventBusService } from '@situs/event-bus/nest';
import type { SseServer } from '@situs/event-bus';
import { DEMO_CONFIG, type DemoConfig } from '../demo-config';

/**
 * The Rust SSE server (`bus.sse.listen`) the page's EventBusProvider connects to. Its streams live
 * on the addon's runtime, not on Node's event loop. It is another origin than the page: CORS on.
 */
@Injectable()
export class PageSseServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private server: SseServer | undefined;

  constructor(
    private readonly events: EventBusService,
    @Inject(DEMO_CONFIG) private readonly config: DemoConfig,
  ) {}

  get url(): string {
    if (!this.server) throw new Error('the SSE server is not listening yet');
    return this.server.url;
  }

  async onApplicationBootstrap(): Promise<void> {
    this.server = await this.events.sse.listen({ host: this.config.host, port: this.config.ssePort, cors: true });
  }

  // Before the bus closes (EventBusModule closes it on application shutdown).
  async beforeApplicationShutdown(): Promise<void> {
    await this.server?.close();
  }
}
