import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { OPENED_BUS, type OpenedBus } from './opened-bus';

/**
 * Closes the bus when the application shuts down (`app.close()`, or a signal with
 * `app.enableShutdownHooks()`): fire-and-forget publishes and pending deliveries are drained
 * first. It runs after the HTTP server stopped, so requests still in flight publish normally.
 */
@Injectable()
export class BusLifecycle implements OnApplicationShutdown {
  constructor(@Inject(OPENED_BUS) private readonly opened: OpenedBus) {}

  async onApplicationShutdown(): Promise<void> {
    await this.opened.bus.close();
  }
}
