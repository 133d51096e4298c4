import { EventBusError, native } from './errors';
import type { NativeBus } from './native';
import { isoOf, toJson, withDates } from './serialize';
import type {
  RegisterWebhook,
  UpdateWebhook,
  WebhookAttempt,
  WebhookDelivery,
  WebhookDeliveryQuery,
  WebhookEndpoint,
} from './types';

type Wire<T> = { [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K] };

function endpointFromWire<T extends WebhookEndpoint>(wire: object): T {
  return withDates<T>(wire, ['createdAt', 'updatedAt']);
}

function deliveryFromWire(wire: Wire<WebhookDelivery> & { attemptLog: Array<Wire<WebhookAttempt>> }): WebhookDelivery {
  return {
    ...withDates<WebhookDelivery>(wire, ['nextAttemptAt', 'createdAt', 'updatedAt']),
    attemptLog: wire.attemptLog.map((a) => withDates<WebhookAttempt>(a, ['at'])),
  };
}

function checkId(id: unknown, field: string): string {
  if (typeof id !== 'string') throw new EventBusError('INVALID_EVENT', `${field} must be a string`);
  return id;
}

/**
 * Webhook endpoints, stored beside the events. When an event commits, one delivery per matching
 * enabled endpoint is written in the same transaction; Rust workers POST it signed per Standard
 * Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and retry with backoff.
 */
export class Webhooks {
  /** @internal */
  constructor(private readonly nativeBus: NativeBus) {}

  /** Resolves with the endpoint and its secret (`whsec_…`; keep it, it is not shown again). */
  register(endpoint: RegisterWebhook): Promise<WebhookEndpoint & { secret: string }> {
    return native(async () => {
      const json = await this.nativeBus.webhookRegister(toJson(endpoint, 'endpoint'));
      return endpointFromWire(JSON.parse(json));
    });
  }

  list(options: { tenantId?: string } = {}): Promise<WebhookEndpoint[]> {
    return native(async () => {
      const tenantId = options?.tenantId;
      if (tenantId !== undefined && typeof tenantId !== 'string') {
        throw new EventBusError('INVALID_EVENT', 'tenantId must be a string');
      }
      const json = await this.nativeBus.webhookList(tenantId ?? null);
      return (JSON.parse(json) as Array<{ createdAt: string; updatedAt: string }>).map((e) => endpointFromWire(e));
    });
  }

  /** Fails with NOT_FOUND when there is no such endpoint. */
  get(id: string): Promise<WebhookEndpoint> {
    return native(async () => endpointFromWire(JSON.parse(await this.nativeBus.webhookGet(checkId(id, 'id')))));
  }

  /** With `rotateSecret: true` the result carries the new `secret`. */
  update(id: string, changes: UpdateWebhook): Promise<WebhookEndpoint & { secret?: string }> {
    return native(async () => {
      const json = await this.nativeBus.webhookUpdate(checkId(id, 'id'), toJson(changes, 'changes'));
      return endpointFromWire(JSON.parse(json));
    });
  }

  /** Removes the endpoint and its deliveries. */
  remove(id: string): Promise<void> {
    return native(() => this.nativeBus.webhookRemove(checkId(id, 'id')));
  }

  /**
   * Newest first, with every attempt's status code, error, latency and truncated response. Each
   * names its event (`eventId`, `eventType`) and the `webhook-id` header sent (`webhookId`).
   */
  deliveries(query: WebhookDeliveryQuery = {}): Promise<WebhookDelivery[]> {
    return native(async () => {
      const json = await this.nativeBus.webhookDeliveries(toJson(query ?? {}, 'query'));
      return (JSON.parse(json) as Array<Parameters<typeof deliveryFromWire>[0]>).map(deliveryFromWire);
    });
  }

  /** Sends a delivery again (same `webhook-id`), whatever its status. */
  replay(deliveryId: number): Promise<void> {
    return native(() => this.nativeBus.webhookReplay(deliveryId));
  }

  /** Sends an endpoint's dead deliveries again (those created since `since`, if given). */
  replayFailed(options: { endpointId: string; since?: Date | string }): Promise<{ replayed: number }> {
    return native(async () => {
      const since = isoOf(options?.since);
      if (since !== undefined && typeof since !== 'string') {
        throw new EventBusError('INVALID_EVENT', 'since must be a Date or an ISO-8601 string');
      }
      const replayed = await this.nativeBus.webhookReplayFailed(checkId(options?.endpointId, 'endpointId'), since ?? null);
      return { replayed };
    });
  }
}
