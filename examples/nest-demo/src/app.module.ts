import { Module, type DynamicModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { EventBusModule } from '@situs/event-bus/nest';
import { EventBusHealthIndicator } from '@situs/event-bus/nest/health';
import { AuditHandler } from './audit/audit.handler';
import { DEMO_CONFIG, type DemoConfig } from './demo-config';
import { EventsController } from './events/events.controller';
import { PageSseServer } from './events/page-sse-server';
import { HealthController } from './health/health.controller';
import { PluginsController } from './plugins/plugins.controller';
import { ProjectActivityPlugin } from './plugins/project-activity.plugin';
import { ProjectsController } from './projects/projects.controller';
import { ProjectsService } from './projects/projects.service';
import { WebhookReceiverController } from './webhooks/webhook-receiver.controller';
import { WebhookReceiverService } from './webhooks/webhook-receiver.service';
import { WebhookRegistration } from './webhooks/webhook-registration';

@Module({})
export class AppModule {
  static forRoot(config: DemoConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        EventBusModule.forRoot({
          // undefined: EVENT_STORE_URL, else the embedded SQLite file sqlite://./event-bus.db.
          storeUrl: config.storeUrl,
          // FOR THE DEMO ONLY: its webhook receiver is this app, on http://127.0.0.1. Production
          // keeps the defaults (https only, no loopback or private addresses: SSRF protection).
          webhook: { allowHttp: true, allowPrivateNetworks: true, backoff: { initialMs: 1000, maxMs: 30_000, factor: 2 } },
          isGlobal: true,
        }),
        TerminusModule,
      ],
      controllers: [ProjectsController, EventsController, HealthController, WebhookReceiverController, PluginsController],
      providers: [
        { provide: DEMO_CONFIG, useValue: config },
        ProjectsService,
        AuditHandler,
        ProjectActivityPlugin,
        PageSseServer,
        WebhookReceiverService,
        WebhookRegistration,
        EventBusHealthIndicator,
      ],
    };
  }
}
