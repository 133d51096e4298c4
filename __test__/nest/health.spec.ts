import 'reflect-metadata';
import http from 'node:http';
import { Controller, Get, Inject, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule, type HealthCheckResult } from '@nestjs/terminus';
import { EventBusModule } from '@situs/event-bus/nest';
import { EventBusHealthIndicator } from '@situs/event-bus/nest/health';
import { postgresStore } from '../stores';
import { eventually, startApp } from './nest-app';
import { tcpProxy } from './tcp-proxy';

jest.setTimeout(60_000);

function get(url: string): Promise<{ status: number; body: { status: string; info?: unknown; error?: unknown; details: Record<string, Record<string, unknown>> } }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

it('EventBusHealthIndicator in a @HealthCheck() controller: 200 up, 503 while PostgreSQL is unreachable, 200 again without a restart', async () => {
  const store = await postgresStore();
  const pgUrl = new URL(store.url.replace(/^postgres:/, 'http:'));
  const proxy = await tcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
  const proxied = store.url.replace(`${pgUrl.hostname}:${pgUrl.port || 5432}`, `127.0.0.1:${proxy.port}`);

  @Controller()
  class HealthController {
    constructor(
      @Inject(HealthCheckService) private readonly health: HealthCheckService,
      @Inject(EventBusHealthIndicator) private readonly eventBus: EventBusHealthIndicator,
    ) {}

    @Get('health')
    @HealthCheck()
    check(): Promise<HealthCheckResult> {
      return this.health.check([() => this.eventBus.isHealthy('eventBus', { timeoutMs: 500 })]);
    }
  }

  @Module({
    imports: [
      TerminusModule.forRoot({ logger: false }),
      EventBusModule.forRoot({ storeUrl: proxied, logger: () => undefined, store: { acquireTimeoutMs: 2000 } }),
    ],
    controllers: [HealthController],
    providers: [EventBusHealthIndicator],
  })
  class AppModule {}

  const { app, url } = await startApp(AppModule);
  try {
    const up = await get(`${url}/health`);
    expect(up.status).toBe(200);
    expect(up.body.status).toBe('ok');
    expect(up.body.details.eventBus.status).toBe('up');

    await proxy.stop();
    const started = Date.now();
    const down = await get(`${url}/health`);
    expect(down.status).toBe(503);
    expect(down.body.details.eventBus.status).toBe('down');
    expect(typeof down.body.details.eventBus.message).toBe('string');
    // The short timeout (500 ms), not the pool's 2 s acquire timeout, bounds the check.
    expect(Date.now() - started).toBeLessThan(1500);

    await proxy.start();
    await eventually(async () => (await get(`${url}/health`)).status === 200, 'the indicator to be up again');
  } finally {
    await proxy.start().catch(() => undefined);
    await app.close();
    await proxy.stop();
    await store.drop();
  }
});
