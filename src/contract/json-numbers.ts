/**
 * A JSON number beyond what a double holds (`1e400`, `-1e400`, an integer of 400 digits) is valid JSON,
 * but JSON.parse turns it into ±Infinity, which JSON.stringify (the queue, `jsonb`) writes as `null`: the
 * stored message would silently differ from the one sent. These are found, with their JSON pointers, so
 * the request is refused instead.
 *
 * Reaching 1.8e308 takes an exponent of 3 digits or, with at most 2, a mantissa of at least 210 digits.
 * So a text shorter than that is looked at only when it has such an exponent, and a longer one has its
 * parsed values walked, a small share of JSON.parse's own time (scanning the text for a long run of
 * digits instead cost more: docs/capacity-plan.md#measurements-behind-choices-in-the-code). Pointers are built only once something is found.
 */
const THREE_DIGIT_EXPONENT = /[eE][+-]?\d{3}/;
const LONG_MANTISSA = 210;

/** What the refusal says of each number. */
export const NON_FINITE_DETAIL =
  'must be a number a 64-bit float can hold (magnitude below 1.8e308): this one would be stored as null';

/**
 * The JSON pointers (RFC 6901) of the numbers in `value`, parsed from `text`, that are not finite; at
 * most `limit` of them. Iterative: the body may nest as deep as its 100,000 containers allow.
 */
export function nonFiniteNumbers(text: string, value: unknown, limit = 20): string[] {
  if (text.length < LONG_MANTISSA && !THREE_DIGIT_EXPONENT.test(text)) return [];
  return hasNonFinite(value) ? pointersOf(value, limit) : [];
}

function hasNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return true;
    } else if (Array.isArray(v)) {
      for (const child of v) stack.push(child);
    } else if (v !== null && typeof v === 'object') {
      for (const k in v) stack.push((v as Record<string, unknown>)[k]);
    }
  }
  return false;
}

function pointersOf(value: unknown, limit: number): string[] {
  const found: string[] = [];
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0 && found.length < limit) {
    const [v, at] = stack.pop()!;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) found.push(at);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}/${i}`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, child] = entries[i]!;
        stack.push([child, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`]);
      }
    }
  }
  return found;
}
