import { EventType } from '../types';

/**
 * The seed's legacy names for the `EventType` values (`ProjectEventType.PROJECT_CREATED` is
 * `'PROJECT_CREATED'`), for callers of the old `RealtimeEventsService.publish(type, payload)`.
 */
export const ProjectEventType = Object.freeze(
  Object.fromEntries(Object.keys(EventType).map((name) => [name, name])) as { readonly [K in keyof typeof EventType]: K },
);
export type ProjectEventType = keyof typeof EventType;

const KNOWN = new Map<string, string>(Object.entries(EventType));
const SNAKE = /^[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+$/;

/**
 * The default legacy mapping: a known `EventType` name gives its value; a snake or
 * SCREAMING_SNAKE name has its first `_` turned into `.` and is lower-cased
 * (`PROJECT_STATUS_CHANGED` → `project.status_changed`); anything else (dot types) is unchanged.
 */
export function legacyEventType(type: string): string {
  const known = KNOWN.get(type);
  if (known !== undefined) return known;
  if (!SNAKE.test(type)) return type;
  const lower = type.toLowerCase();
  const cut = lower.indexOf('_');
  return `${lower.slice(0, cut)}.${lower.slice(cut + 1)}`;
}
