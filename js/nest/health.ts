// @situs/event-bus/nest/health: an indicator for @nestjs/terminus 11+, in an entry of its own so
// that importing @situs/event-bus/nest never loads terminus.
import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { messageOf } from '../errors';
import { EventBus } from '../event-bus';

export interface EventBusHealthOptions {
  /** How long the store round trip may take before the bus counts as down (default 1000 ms). */
  timeoutMs?: number;
}

/**
 * Reports whether the bus's store answers: `isHealthy(key)` reads one event with a short timeout.
 * Add it to the providers of the module holding your `@HealthCheck()` controller (that module
 * imports `TerminusModule` and sees `EventBusModule`).
 */
@Injectable()
export class EventBusHealthIndicator {
  constructor(
    @Inject(EventBus) private readonly bus: EventBus,
    @Inject(HealthIndicatorService) private readonly health: HealthIndicatorService,
  ) {}

  async isHealthy<const Key extends string>(key: Key, options: EventBusHealthOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.health.check(key);
    const timeoutMs = options.timeoutMs ?? 1000;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.bus.getEvents({ limit: 1 }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from the store within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      return indicator.up({ latencyMs: Date.now() - started });
    } catch (err) {
      return indicator.down({ message: messageOf(err) });
    } finally {
      clearTimeout(timer);
    }
  }
}
