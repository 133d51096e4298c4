// @situs/event-bus/nest/health: an indicator for @nestjs/terminus 11+, in an entry of its own so
// that importing @situs/event-bus/nest never loads terminus.
import { Inject, Injectable, Optional } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { EventBusError } from '../errors';
import { EventBusService } from './event-bus.service';
import { getEventBusServiceToken } from './tokens';

export interface EventBusHealthOptions {
  /** How long the checks may take before the bus counts as down (default 2000 ms). */
  timeoutMs?: number;
  /** The bus to check, for apps with several (`EventBusModule.forRoot({ name })`); default: the unnamed one. */
  bus?: string;
}

/**
 * Reports `bus.health()` (store, LISTEN connection, webhook backlog, group lag) through
 * `EventBusService.health()`: `isHealthy(key)` is up with each check, or down with the failing
 * ones. Add it to the providers of the module holding your
 * `@HealthCheck()` controller (that module imports `TerminusModule` and sees `EventBusModule`).
 */
@Injectable()
export class EventBusHealthIndicator {
  constructor(
    // Resolved by injection, as the app sees it; named buses are looked up by their token.
    @Optional() @Inject(EventBusService) private readonly defaultBus: EventBusService | null,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
    @Inject(HealthIndicatorService) private readonly health: HealthIndicatorService,
  ) {}

  async isHealthy<const Key extends string>(key: Key, options: EventBusHealthOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.health.check(key);
    const service =
      options.bus === undefined ? this.defaultBus : this.moduleRef.get<EventBusService>(getEventBusServiceToken(options.bus), { strict: false });
    if (!service) throw new EventBusError('INVALID_CONFIG', 'EventBusHealthIndicator: no unnamed EventBusModule is visible here (pass { bus })');
    const result = await service.health({ timeoutMs: options.timeoutMs });
    return result.healthy
      ? indicator.up({ latencyMs: result.latencyMs, checks: result.checks })
      : indicator.down({ message: result.reason, checks: result.checks });
  }
}
