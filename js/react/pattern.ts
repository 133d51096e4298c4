// The bus's pattern rules (src/pattern.rs), for matching in the browser: `*` is exactly one
// segment, `**` (alias `#`) zero or more trailing segments, literals are [a-z][a-z0-9_]*.

type Segment = { kind: 'literal'; value: string } | { kind: 'one' } | { kind: 'tail' };

/** A parsed pattern; `matches` tells whether an event type falls under it. */
export interface CompiledPattern {
  readonly source: string;
  matches(eventType: string): boolean;
}

const TYPE_SEGMENT = /^[a-z][a-z0-9_]*$/;

/** Parses `source`, throwing an Error that gives the reason when it is not a valid pattern. */
export function compilePattern(source: string): CompiledPattern {
  const invalid = (why: string): Error => new Error(`pattern ${JSON.stringify(source)} is not a valid pattern: ${why}`);
  if (typeof source !== 'string' || source === '') throw invalid('it is empty');
  const parts = source.split('.');
  const last = parts.length - 1;
  const segments: Segment[] = parts.map((part, i) => {
    if (part === '') throw invalid('it has an empty segment');
    if (part === '*') return { kind: 'one' };
    if (part === '**' || part === '#') {
      if (i !== last) throw invalid('`**` and `#` are only allowed as the last segment');
      return { kind: 'tail' };
    }
    if (!TYPE_SEGMENT.test(part)) {
      throw invalid('segments are `*`, `**`, `#` or lowercase ASCII words ([a-z][a-z0-9_]*)');
    }
    return { kind: 'literal', value: part };
  });
  return {
    source,
    matches(eventType: string): boolean {
      const typeParts = eventType.split('.');
      let next = 0;
      for (const segment of segments) {
        if (segment.kind === 'tail') return true;
        if (next >= typeParts.length) return false;
        if (segment.kind === 'literal' && typeParts[next] !== segment.value) return false;
        next++;
      }
      return next === typeParts.length;
    },
  };
}

/** True when `eventType` matches `pattern` (throws on an invalid pattern). */
export function matchesPattern(pattern: string, eventType: string): boolean {
  return compilePattern(pattern).matches(eventType);
}
