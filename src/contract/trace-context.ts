/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate` headers,
 * parsed and formatted as the recommendation specifies. Used by the HTTP edge (what a client sends), the
 * queue (what each message carries) and the worker (what it stores), see docs/tracing.md.
 *
 * Hand-written (about 100 lines) rather than taken from @opentelemetry/core: its
 * W3CTraceContextPropagator works only through @opentelemetry/api's Context and propagation globals,
 * which tracing off must not load (src/ops/tracing.ts), and it differs from the recommendation where
 * intake must not: its TraceState keeps the valid members of an invalid list and silently drops members
 * past 32, where the recommendation's test suite expects such a list discarded. The grammar followed is
 * the recommendation's current one (keys may hold `@` anywhere after their first character).
 */

/** A trace context as intake carries and stores it (the same shape as ops/tracing.ts's TraceContext). */
export interface TraceContext {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the span (parent-id) this context names. */
  spanId: string;
  /** The `sampled` trace flag. */
  sampled: boolean;
  /** The `tracestate` list, validated and normalised (members joined by `,`), if any. */
  traceState?: string;
}

/** version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters. */
const TRACEPARENT_LENGTH = 55;
const VERSION_00 = /^(00)-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
/** A version other than 00: the first 55 characters as version 00 has them, then nothing or `-…`. */
const FUTURE_VERSION = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)/;
/** VERSION_00 without captures: a test, no match array. */
const VERSION_00_PLAIN = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const ZERO_TRACE_ID = '0'.repeat(32);
const ZERO_SPAN_ID = '0'.repeat(16);
/** Optional whitespace (RFC 9110 OWS) around a header value or list member. */
const OWS = /^[ \t]+|[ \t]+$/g;

/** Whether `s` starts or ends with a space or tab: the rare case, so the common one allocates nothing. */
function hasOws(s: string): boolean {
  const first = s.charCodeAt(0);
  const last = s.charCodeAt(s.length - 1);
  return first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09;
}

/**
 * Parses `traceparent` (and, only when that is valid, `tracestate`). Returns undefined for a missing or
 * invalid `traceparent`: the caller then starts a new trace. An invalid `tracestate` is dropped on its
 * own; the `traceparent` still counts. Version 00 must be exactly 55 characters; a higher version is
 * read by its first 55 characters if a `-` or the end follows them (forward compatibility); version ff
 * is invalid, as are uppercase hex digits and all-zero ids.
 */
export function parseTraceContext(
  traceparent: string | string[] | undefined,
  tracestate?: string | string[] | undefined,
): TraceContext | undefined {
  // Two traceparent headers are one too many: which one names the parent cannot be known.
  if (typeof traceparent !== 'string') return undefined;
  // Node's HTTP parser joins repeated header lines with ", " (RFC 9110 list syntax), so two headers
  // arrive as one string: no traceparent of any version has a comma, so one means two (or more).
  // Without this, `cc-…-01-x, 00-…` passed as one future-version value, its tail ignored.
  if (traceparent.includes(',')) return undefined;
  const value = hasOws(traceparent) ? traceparent.replace(OWS, '') : traceparent;
  // Version 00 is exactly 55 characters; a later version may add fields after a `-`.
  const m = value.startsWith('00')
    ? VERSION_00.exec(value)
    : value.length >= TRACEPARENT_LENGTH
      ? FUTURE_VERSION.exec(value)
      : null;
  if (!m || m[1] === 'ff') return undefined;
  const [, , traceId, spanId, flags] = m as unknown as [string, string, string, string, string];
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined;
  const sampled = (Number.parseInt(flags, 16) & 1) === 1;
  const state = parseTraceState(tracestate);
  return state === undefined ? { traceId, spanId, sampled } : { traceId, spanId, sampled, traceState: state };
}

/**
 * The trace id of a carried `traceparent` (a queued message's field): only when it is valid by the
 * rules above, since a field from another producer is not trusted blindly; undefined otherwise.
 */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  if (traceparent === undefined) return undefined;
  // What intake itself writes (version 00, no whitespace), checked without allocating a parse: the
  // worker calls this for every row it stores (docs/capacity-plan.md#measurements-behind-choices-in-the-code).
  if (VERSION_00_PLAIN.test(traceparent)) {
    const traceId = traceparent.slice(3, 35);
    return traceId === ZERO_TRACE_ID || traceparent.startsWith(ZERO_SPAN_ID, 36) ? undefined : traceId;
  }
  return parseTraceContext(traceparent)?.traceId;
}

/** The `traceparent` (version 00) of a context: what intake sends on and puts on the queue. */
export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '01' : '00'}`;
}

/** At most this many list-members in `tracestate`; a longer list is invalid. */
export const MAX_TRACESTATE_MEMBERS = 32;
/** `tracestate` is propagated up to this many characters, truncated by the recommendation's rules. */
export const MAX_TRACESTATE_LENGTH = 512;
/** Members longer than this go first when the list must be truncated. */
const LONG_MEMBER = 128;

/** A lowercase letter or digit, then up to 255 of those and `_ - * / @`. */
const KEY = /^[a-z0-9][a-z0-9_*/@-]{0,255}$/;
/** 1 to 256 printable ASCII characters, no `,` or `=`, not ending in a space. */
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * Validates `tracestate` (several header lines are one list, joined by `,`). Empty members are
 * allowed and dropped; a key given again keeps its leftmost member (the recommendation lets a vendor
 * discard duplicates); one invalid member or more than 32 members make the whole list invalid
 * (undefined). A valid list longer than 512 characters is truncated by whole members as the
 * recommendation says: members over 128 characters first, then from the end.
 */
export function parseTraceState(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const joined = typeof header === 'string' ? header : header.join(',');
  const members: string[] = [];
  const keys = new Set<string>();
  let count = 0;
  for (const raw of joined.split(',')) {
    const member = hasOws(raw) ? raw.replace(OWS, '') : raw;
    if (member === '') continue;
    if (++count > MAX_TRACESTATE_MEMBERS) return undefined;
    const eq = member.indexOf('=');
    if (eq < 0) return undefined;
    const key = member.slice(0, eq);
    if (!KEY.test(key) || !VALUE.test(member.slice(eq + 1))) return undefined;
    if (keys.has(key)) continue;
    keys.add(key);
    members.push(member);
  }
  if (members.length === 0) return undefined;
  return truncate(members).join(',') || undefined;
}

function truncate(members: string[]): string[] {
  const length = (list: string[]) => list.reduce((n, m) => n + m.length, 0) + list.length - 1;
  if (length(members) <= MAX_TRACESTATE_LENGTH) return members;
  let list = members;
  while (length(list) > MAX_TRACESTATE_LENGTH) {
    const long = list.findIndex((m) => m.length > LONG_MEMBER);
    if (long < 0) break;
    list = [...list.slice(0, long), ...list.slice(long + 1)];
  }
  while (list.length > 0 && length(list) > MAX_TRACESTATE_LENGTH) list = list.slice(0, -1);
  return list;
}
