import { Injectable } from '@nestjs/common';
import { Webhook } from 'standardwebhooks';

/** One request the receiver got, after checking its Standard Webhooks signature. */
export interface ReceivedWebhook {
  webhookId: string;
  eventId: string | null;
  eventType: string | null;
  projectId: string | null;
  verified: boolean;
  error?: string;
  receivedAt: string;
}

const KEEP = 50;

/**
 * The demo's own webhook consumer: what a customer's server would do with our deliveries.
 * The secret is set once the endpoint is registered (WebhookRegistration).
 */
@Injectable()
export class WebhookReceiverService {
  private webhook: Webhook | undefined;
  private readonly received: ReceivedWebhook[] = [];
  private verifiedCount = 0;
  private rejectedCount = 0;

  useSecret(secret: string): void {
    this.webhook = new Webhook(secret);
  }

  /** Verifies and records one request; returns whether it was genuine. */
  receive(body: Buffer | string, headers: Record<string, string>): boolean {
    const record: ReceivedWebhook = {
      webhookId: headers['webhook-id'] ?? '',
      eventId: null,
      eventType: null,
      projectId: null,
      verified: false,
      receivedAt: new Date().toISOString(),
    };
    try {
      if (!this.webhook) throw new Error('no endpoint registered yet');
      const event = this.webhook.verify(body, headers) as { id?: string; type?: string; projectId?: string | null };
      Object.assign(record, { verified: true, eventId: event.id ?? null, eventType: event.type ?? null, projectId: event.projectId ?? null });
      this.verifiedCount++;
    } catch (err) {
      record.error = err instanceof Error ? err.message : String(err);
      this.rejectedCount++;
    }
    this.received.unshift(record);
    this.received.length = Math.min(this.received.length, KEEP);
    return record.verified;
  }

  summary(): { verified: number; rejected: number; recent: ReceivedWebhook[] } {
    return { verified: this.verifiedCount, rejected: this.rejectedCount, recent: [...this.received] };
  }

  /** Whether a delivery of this event was received and its signature checked out. */
  hasVerified(eventId: string): boolean {
    return this.received.some((r) => r.verified && r.eventId === eventId);
  }
}
