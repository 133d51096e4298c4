import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { EventBusHealthIndicator } from '@situs/event-bus/nest/health';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly eventBus: EventBusHealthIndicator,
  ) {}

  /** 200 with `eventBus: up` while the store answers, 503 otherwise. */
  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.eventBus.isHealthy('eventBus')]);
  }
}
