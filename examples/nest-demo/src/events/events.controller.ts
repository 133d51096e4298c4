import { Controller, Get, Headers, Query, Sse, type MessageEvent } from '@nestjs/common';
import type { EventBusMetrics, WebhookDelivery } from '@situs/event-bus';
import { EventBusService, RealtimeEventsService } from '@situs/event-bus/nest';
import type { Observable } from 'rxjs';
import { AuditHandler } from '../audit/audit.handler';
import { WebhookReceiverService, type ReceivedWebhook } from '../webhooks/webhook-receiver.service';
import { PageSseServer } from './page-sse-server';

/** What the page needs to start: where the SSE server is, and where its tail begins. */
export interface PageConfig {
  sseUrl: string;
  /** Replay the last few events into the tail (the provider starts after this position). */
  startAfter: number;
}

export interface DemoStatus {
  audit: { total: number; byType: Record<string, number> };
  receiver: { verified: number; rejected: number; recent: ReceivedWebhook[] };
}

const TAIL_HISTORY = 25;

@Controller()
export class EventsController {
  constructor(
    private readonly events: EventBusService,
    private readonly realtime: RealtimeEventsService,
    private readonly sseServer: PageSseServer,
    private readonly audit: AuditHandler,
    private readonly receiver: WebhookReceiverService,
  ) {}

  /** The legacy-style `@Sse()` endpoint: `?types=project.*&projectId=…`, resumes after Last-Event-ID. */
  @Sse('api/events')
  stream(
    @Query('types') types?: string,
    @Query('projectId') projectId?: string,
    @Headers('last-event-id') lastEventId?: string,
  ): Observable<MessageEvent> {
    return this.realtime.stream({
      types: types ? types.split(',') : undefined,
      projectId: projectId || undefined,
      lastEventId: lastEventId || undefined,
    });
  }

  @Get('metrics')
  metrics(): EventBusMetrics {
    return this.events.metrics();
  }

  @Get('api/config')
  async config(): Promise<PageConfig> {
    const { events } = await this.events.getEvents({ order: 'desc', limit: 1 });
    const last = events[0]?.position ?? 0;
    return { sseUrl: this.sseServer.url, startAfter: Math.max(0, last - TAIL_HISTORY) };
  }

  @Get('api/webhooks/deliveries')
  deliveries(): Promise<WebhookDelivery[]> {
    return this.events.webhooks.deliveries({ limit: 20 });
  }

  @Get('api/status')
  status(): DemoStatus {
    return { audit: { total: this.audit.total(), byType: this.audit.byType() }, receiver: this.receiver.summary() };
  }
}
