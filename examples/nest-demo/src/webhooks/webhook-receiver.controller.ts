import { Controller, HttpCode, Post, Req, UnauthorizedException } from '@nestjs/common';
import { WebhookReceiverService } from './webhook-receiver.service';

/** The part of Express's request the receiver reads (the raw body needs `rawBody: true`). */
interface RawRequest {
  rawBody?: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

export const RECEIVER_PATH = 'webhooks/receiver';

@Controller(RECEIVER_PATH)
export class WebhookReceiverController {
  constructor(private readonly receiver: WebhookReceiverService) {}

  // Signatures cover the exact bytes sent, so verify the raw body, not re-serialized JSON.
  @Post()
  @HttpCode(204)
  receive(@Req() req: RawRequest): void {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers[name] = value;
    if (!this.receiver.receive(req.rawBody ?? '', headers)) throw new UnauthorizedException('bad webhook signature');
  }
}
