import { Injectable } from '@nestjs/common';
import { EventBusService } from '@situs/event-bus/nest';
import { RECEIVER_PATH } from './webhook-receiver.controller';
import { WebhookReceiverService } from './webhook-receiver.service';

/**
 * Registers the demo's own receiver as a webhook endpoint once the app listens (its URL needs the
 * port). Endpoints left by earlier runs of the demo on the same store are removed first, so a
 * persistent SQLite file does not collect endpoints pointing at ports nobody listens on.
 */
@Injectable()
export class WebhookRegistration {
  private endpointId: string | undefined;

  constructor(
    private readonly events: EventBusService,
    private readonly receiver: WebhookReceiverService,
  ) {}

  get id(): string | undefined {
    return this.endpointId;
  }

  async register(appUrl: string): Promise<string> {
    for (const endpoint of await this.events.webhooks.list()) {
      if (endpoint.description === 'nest-demo receiver') await this.events.webhooks.remove(endpoint.id);
    }
    const { id, secret } = await this.events.webhooks.register({
      url: `${appUrl}/${RECEIVER_PATH}`,
      events: ['project.**'],
      description: 'nest-demo receiver',
    });
    this.receiver.useSecret(secret);
    this.endpointId = id;
    return id;
  }
}
