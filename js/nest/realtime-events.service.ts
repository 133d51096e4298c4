import { Inject, Injectable, Logger, type MessageEvent } from '@nestjs/common';
import { Observable } from 'rxjs';
import { messageOf } from '../errors';
import type { EventBus } from '../event-bus';
import type { SseStreamOptions } from '../sse';
import type { PublishInput } from '../types';
import { legacyEventType, type ProjectEventType } from './event-types';
import { OPENED_BUS, type OpenedBus } from './opened-bus';
import { routingFields } from './routing-fields';

/** The filter of `RealtimeEventsService.stream`; legacy names in `types` are mapped too. */
export type RealtimeStreamFilter = SseStreamOptions;

/**
 * A drop-in for the legacy `RealtimeEventsService`: the same fire-and-forget `publish(type,
 * payload)` callers already use, now stored durably and fanned out by the bus, and `stream()`
 * for existing `@Sse()` controllers.
 */
@Injectable()
export class RealtimeEventsService {
  private readonly logger = new Logger('EventBus');
  private readonly bus: EventBus;
  private readonly mapType: (type: string) => string;
  private failures = 0;

  constructor(@Inject(OPENED_BUS) opened: OpenedBus) {
    this.bus = opened.bus;
    this.mapType = opened.mapEventType ?? legacyEventType;
  }

  /** Publishes that failed (bad type or payload, store down, bus closed) since the app started. */
  get failedPublishes(): number {
    return this.failures;
  }

  /**
   * Fire-and-forget: returns at once. `projectId`, `tenantId` and `userId` are read from the
   * payload when they are strings. A failure is logged and counted, never thrown or left as an
   * unhandled rejection, so callers written for the old service keep working.
   */
  publish<T>(type: ProjectEventType | string, payload?: T): void {
    let input: PublishInput;
    try {
      input = this.toInput(type, payload);
    } catch (err) {
      this.failed(type, err);
      return;
    }
    this.bus.publishAndForget(input, (err) => this.failed(input.type, err));
  }

  /**
   * The bus's events as an `Observable<MessageEvent>` for a NestJS `@Sse()` handler: what came
   * after `lastEventId` first, then live. Unsubscribing (the client left) ends the native stream
   * at once rather than at the next event.
   */
  stream(filter: RealtimeStreamFilter = {}): Observable<MessageEvent> {
    const options = filter.types ? { ...filter, types: filter.types.map((t) => this.mapType(t)) } : filter;
    return new Observable<MessageEvent>((subscriber) => {
      const stream = this.bus.sse.stream(options);
      void (async () => {
        for await (const m of stream) subscriber.next({ id: m.id, type: m.type, data: m.data ?? {} });
        subscriber.complete();
      })().catch((err: unknown) => subscriber.error(err));
      return () => void stream.return?.();
    });
  }

  private toInput(type: string, payload: unknown): PublishInput {
    // Not a string: let the core name the field in its error.
    const mapped = typeof type === 'string' ? this.mapType(type) : type;
    return { type: mapped, payload: payload === undefined ? null : payload, ...routingFields(payload) };
  }

  private failed(type: unknown, err: unknown): void {
    this.failures++;
    this.logger.error(`publish of ${String(type)} failed: ${messageOf(err)}`);
  }
}
