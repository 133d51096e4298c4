export { EventBus, EventBusHandle, TenantEventBus } from './event-bus';
export { EventBusError } from './errors';
export { Webhooks } from './webhooks';
export { Sse, SseStreams } from './sse';
export type { SseAuthRequest, SseGrant, SseListenOptions, SseMessage, SseServer, SseStreamOptions } from './sse';
export type { EventBusErrorCode } from './errors';
export { EventType } from './types';
export type {
  BusEvent,
  BusHealth,
  DeadLetter,
  DeadLetterQuery,
  EventBusMetrics,
  EventBusOptions,
  EventFor,
  EventHandler,
  EventMap,
  EventPage,
  EventQuery,
  HealthCheck,
  KnownEventType,
  LogLevel,
  LogRecord,
  MatchingTypes,
  MetricTotals,
  Middleware,
  PayloadOf,
  PublishedEvent,
  PublishInput,
  RegisterWebhook,
  SubscribeOptions,
  Subscription,
  UpdateWebhook,
  WebhookAttempt,
  WebhookDelivery,
  WebhookDeliveryQuery,
  WebhookEndpoint,
} from './types';
