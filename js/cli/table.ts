// Nested objects as `a.b.c  value` rows, so a field added to `metrics()` shows up by itself.

/** Leaves of `value` with their dotted paths, in key order; arrays are leaves (shown as JSON). */
export function flatten(value: unknown, prefix = ''): Array<[string, unknown]> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Date) {
    return [[prefix, value]];
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return [[prefix, '{}']];
  return entries.flatMap(([key, child]) => flatten(child, prefix ? `${prefix}.${key}` : key));
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Two aligned columns: the key, then its value (numbers right-aligned among themselves). */
export function formatTable(rows: Array<[string, unknown]>): string {
  const keyWidth = Math.max(0, ...rows.map(([key]) => key.length));
  const numberWidth = Math.max(0, ...rows.filter(([, v]) => typeof v === 'number').map(([, v]) => cell(v).length));
  return rows
    .map(([key, value]) => {
      const text = typeof value === 'number' ? cell(value).padStart(numberWidth) : cell(value);
      return `${key.padEnd(keyWidth)}  ${text}`.trimEnd();
    })
    .join('\n');
}
