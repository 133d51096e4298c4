// The active OpenTelemetry span, when `@opentelemetry/api` is installed, rides on a published
// event as `metadata.traceparent` / `metadata.tracestate` (W3C trace context): the core stores and
// delivers it with the event, sends it on webhook requests, and SSE clients receive it, so one
// trace follows the event across instances. Without the package (an optional peer), nothing is
// loaded and nothing is added; a traceparent the caller set is never replaced.
import type * as OtelApi from '@opentelemetry/api';

let otel: typeof OtelApi | null | undefined;

function api(): typeof OtelApi | null {
  if (otel === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      otel = require('@opentelemetry/api') as typeof OtelApi;
    } catch {
      otel = null;
    }
  }
  return otel;
}

/** `00-<trace id>-<span id>-<flags>` of the active span, and its tracestate; null without one. */
function activeTraceContext(): { traceparent: string; tracestate?: string } | null {
  const o = api();
  if (!o) return null;
  const span = o.trace.getSpanContext(o.context.active());
  if (!span || !o.isSpanContextValid(span)) return null;
  const flags = (span.traceFlags & 0xff).toString(16).padStart(2, '0');
  const traceparent = `00-${span.traceId}-${span.spanId}-${flags}`;
  const tracestate = span.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** `event` with the active trace context in its metadata, unless it has one (or none is active). */
export function withTraceContext<E>(event: E): E {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return event;
  const trace = activeTraceContext();
  if (!trace) return event;
  const metadata = (event as { metadata?: unknown }).metadata;
  if (metadata === undefined || metadata === null) return { ...event, metadata: trace };
  // Anything but a plain object is left for validation to name; a caller's traceparent wins.
  if (typeof metadata !== 'object' || Array.isArray(metadata) || 'traceparent' in metadata) return event;
  return { ...event, metadata: { ...metadata, ...trace } };
}
