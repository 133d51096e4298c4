import type { PublishInput } from '../types';

const ROUTING_FIELDS = ['projectId', 'tenantId', 'userId'] as const;

/** The routing fields of an event, as stored beside its payload. */
export type RoutingFields = Pick<PublishInput, (typeof ROUTING_FIELDS)[number]>;

/**
 * `projectId`, `tenantId` and `userId` read from a payload (or a cqrs event) when they are strings;
 * other values and other fields are left alone (they stay in the payload).
 */
export function routingFields(source: unknown): RoutingFields {
  const fields: RoutingFields = {};
  if (source !== null && typeof source === 'object') {
    for (const field of ROUTING_FIELDS) {
      const value = (source as Record<string, unknown>)[field];
      if (typeof value === 'string') fields[field] = value;
    }
  }
  return fields;
}
