import type { Ajv, ErrorObject } from 'ajv';
import { MAX_TS } from './message-schema.ts';
import { PROTECTED_MARK } from './protected-fields.ts';

/**
 * Custom Ajv keywords for the rules of docs/contract.md §1 that JSON Schema cannot state. Each one checks its value
 * completely and reports one clear message; `validator.ts` then drops Ajv's generic errors at the same
 * path, so a client reads "looks like milliseconds" rather than "must match a schema in anyOf".
 */

/** What Ajv passes a compiled keyword besides the data (its DataValidationCxt, not exported). */
type DataCxt = { instancePath: string };
type KeywordFn = ((data: unknown, cxt?: DataCxt) => boolean) & {
  errors?: Partial<ErrorObject>[];
};

function fail(fn: KeywordFn, keyword: string, message: string): false {
  fn.errors = [{ keyword, message, params: {} }];
  return false;
}

const unixSeconds: KeywordFn = (data) => {
  const k = 'x-unix-seconds';
  let n: number;
  if (typeof data === 'number') {
    if (!Number.isInteger(data)) return fail(unixSeconds, k, 'must be whole seconds (no fraction)');
    n = data;
  } else if (typeof data === 'string') {
    if (!/^[0-9]+$/.test(data)) {
      return fail(
        unixSeconds,
        k,
        'must be a string of ASCII digits (no sign, spaces, decimal point or exponent)',
      );
    }
    n = data.length > 20 ? Number.POSITIVE_INFINITY : Number(data);
  } else {
    return fail(unixSeconds, k, 'must be a Unix timestamp in seconds, as an integer or a string of digits');
  }
  if (n < 0) return fail(unixSeconds, k, 'must not be negative');
  if (n > MAX_TS) {
    if (n <= MAX_TS * 1000 + 999) {
      return fail(
        unixSeconds,
        k,
        'looks like milliseconds: send whole seconds since the epoch (divide by 1000)',
      );
    }
    return fail(unixSeconds, k, `must be at most ${MAX_TS} (9999-12-31T23:59:59Z)`);
  }
  return true;
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const minNonNull = (min: number): KeywordFn => {
  const fn: KeywordFn = (data) => {
    if (!isPlainObject(data)) return true; // the type error is reported by `type`
    let n = 0;
    for (const key of Object.keys(data)) if (data[key] !== null) n++;
    if (n < min)
      return fail(fn, 'x-min-non-null-properties', 'must have at least one field whose value is not null');
    return true;
  };
  return fn;
};

/** Iterative, so a hostile 1 MiB body of brackets cannot overflow the stack. */
export function depthOf(root: unknown, limit: number): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, d + 1]);
    }
  }
  return max;
}

const maxDepth = (limit: number): KeywordFn => {
  const fn: KeywordFn = (data) => {
    if (!isPlainObject(data)) return true;
    if (depthOf(data, limit) > limit)
      return fail(fn, 'x-max-depth', `must not nest deeper than ${limit} levels`);
    return true;
  };
  return fn;
};

// PostgreSQL text and jsonb cannot hold U+0000, and jsonb rejects unpaired surrogates. Accepting such a
// value would mean answering 202 for a message that can never be stored, so it is refused at the edge.
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is exactly what is looked for
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Iterative, and without spreading arrays into push(): 130,000 arguments overflow the stack. */
function firstUnstorable(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (UNSTORABLE.test(v)) return true;
    } else if (Array.isArray(v)) {
      for (const child of v) stack.push(child);
    } else if (typeof v === 'object' && v !== null) {
      for (const [key, child] of Object.entries(v)) {
        if (UNSTORABLE.test(key)) return true;
        stack.push(child);
      }
    }
  }
  return false;
}

const storable: KeywordFn = (data) => {
  if (firstUnstorable(data)) {
    return fail(
      storable,
      'x-storable',
      'contains U+0000 or an unpaired UTF-16 surrogate, which cannot be stored',
    );
  }
  return true;
};

const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** Pointers listed for one message at most: a hostile body may repeat the key 100,000 times. */
const MAX_MARK_POINTERS = 20;

/**
 * `$pii` is how intake marks a value it encrypted (protected-fields.ts). A client that sends one could
 * make reveal and export decrypt whatever it points at (another person's field copied from the
 * database) under its own IP, so the key is refused at any depth, each with its own pointer (given
 * here in full: Ajv keeps an error's instancePath when the keyword sets it). Iterative, like depthOf.
 */
const noProtectedMark: KeywordFn = (data, cxt) => {
  if (typeof data !== 'object' || data === null) return true;
  const errors: Partial<ErrorObject>[] = [];
  const stack: Array<[unknown, string]> = [[data, cxt?.instancePath ?? '']];
  while (stack.length && errors.length < MAX_MARK_POINTERS) {
    const [v, path] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}/${i}`]);
      continue;
    }
    for (const [key, child] of Object.entries(v)) {
      if (key === PROTECTED_MARK) {
        errors.push({
          keyword: 'x-no-protected-mark',
          instancePath: `${path}/${escapePointer(key)}`,
          message: `is reserved for values intake encrypted itself; a client may not send a "${PROTECTED_MARK}" key`,
          params: {},
        });
      }
      if (typeof child === 'object' && child !== null) stack.push([child, `${path}/${escapePointer(key)}`]);
    }
  }
  if (errors.length === 0) return true;
  noProtectedMark.errors = errors;
  return false;
};

/** Exactly four decimal octets 0–255, no leading zeros, nothing else. */
export const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function addKeywords(ajv: Ajv): void {
  ajv.addFormat('ipv4', IPV4);
  ajv.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
  ajv.addFormat('date-time', true);
  ajv.addKeyword({
    keyword: 'x-unix-seconds',
    errors: true,
    schemaType: 'boolean',
    compile: () => unixSeconds,
  });
  ajv.addKeyword({ keyword: 'x-storable', errors: true, schemaType: 'boolean', compile: () => storable });
  ajv.addKeyword({
    keyword: 'x-no-protected-mark',
    errors: true,
    schemaType: 'boolean',
    compile: () => noProtectedMark,
  });
  ajv.addKeyword({
    keyword: 'x-min-non-null-properties',
    errors: true,
    schemaType: 'number',
    compile: (min: number) => minNonNull(min),
  });
  ajv.addKeyword({
    keyword: 'x-max-depth',
    errors: true,
    schemaType: 'number',
    compile: (limit: number) => maxDepth(limit),
  });
}
