import { createHash } from 'node:crypto';
import type { QueuedMessage } from '../../contract/queued-message.ts';
import { formatTraceparent, parseTraceContext } from '../../contract/trace-context.ts';

/**
 * The on-stream format of the NATS queue (docs/queue-format.md). One stream message carries a group of
 * queued messages that were published together, so one JetStream ack covers the whole group:
 *
 *     {"v":1,"messages":[<QueuedMessage>, ...]}
 *
 * A bare QueuedMessage (`{"v":1,"id":...}`) is read as a group of one, so other producers may publish
 * single messages. The `Nats-Msg-Id` of a group is derived from its message ids (envelopeMsgId), so a
 * retried publish of the same group inside the duplicate window is dropped by the server.
 *
 * Trace context: each message carries its own `traceparent`/`tracestate` fields (an envelope may group
 * messages of many requests, so of many traces). When all of an envelope's messages share one context,
 * the stream message also carries it as the `traceparent`/`tracestate` headers, where NATS tooling looks
 * for it; a message without its own fields takes the headers' (another producer may publish bare
 * messages with only the standard headers).
 */
export interface Envelope {
  v: 1;
  messages: QueuedMessage[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Bytes of `{"v":1,"messages":[` and `]}` around the comma-separated messages. */
const FRAME_BYTES = 21;

/**
 * What names a message in its envelope's `Nats-Msg-Id`: its id, and for a replayed dead letter which
 * replay it is. A second replay of a message is a new publish, not a duplicate of the first: without
 * this, replaying it again within the duplicate window (it failed again, was fixed, was replayed) was
 * acknowledged as a duplicate and never delivered, while its dead letter was deleted.
 */
export function dedupeKey(m: QueuedMessage): string {
  return m.replayed === undefined ? m.id : `${m.id}/replay-${m.replayed}`;
}

/** A group id for `Nats-Msg-Id`: the same messages give the same id, so a republish is a duplicate. */
export function envelopeMsgId(ids: string[]): string {
  const h = createHash('sha256');
  for (const id of ids) h.update(id).update(',');
  return `env-${h.digest('base64url').slice(0, 32)}`;
}

/**
 * Splits already-serialised messages into envelopes of at most `maxBytes`, in order. Returns the
 * index ranges [start, end) per envelope; a message that alone exceeds the limit gets a range of its
 * own and `tooLarge` lists its index, so the caller can fail that one message and publish the rest.
 */
export function splitBySize(
  sizes: number[],
  maxBytes: number,
): { ranges: Array<[number, number]>; tooLarge: number[] } {
  const ranges: Array<[number, number]> = [];
  const tooLarge: number[] = [];
  let start = 0;
  let bytes = FRAME_BYTES;
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i]! + 1; // the comma
    if (FRAME_BYTES + size > maxBytes) {
      if (i > start) ranges.push([start, i]);
      tooLarge.push(i);
      start = i + 1;
      bytes = FRAME_BYTES;
      continue;
    }
    if (bytes + size > maxBytes && i > start) {
      ranges.push([start, i]);
      start = i;
      bytes = FRAME_BYTES;
    }
    bytes += size;
  }
  if (start < sizes.length) ranges.push([start, sizes.length]);
  return { ranges, tooLarge };
}

/** The envelope text for messages serialised with JSON.stringify (one string per message). */
export function encodeEnvelope(parts: string[]): string {
  return `{"v":1,"messages":[${parts.join(',')}]}`;
}

/** A trace context as the queue carries it: what the message fields and the stream headers hold. */
export interface CarriedTrace {
  traceparent: string;
  tracestate?: string;
}

/** The context all the messages share (for the stream message's headers), or undefined. */
export function sharedTrace(messages: QueuedMessage[]): CarriedTrace | undefined {
  const first = messages[0];
  if (first?.traceparent === undefined) return undefined;
  for (const m of messages) {
    if (m.traceparent !== first.traceparent || m.tracestate !== first.tracestate) return undefined;
  }
  return first.tracestate === undefined
    ? { traceparent: first.traceparent }
    : { traceparent: first.traceparent, tracestate: first.tracestate };
}

/** The headers' context, validated (W3C rules): undefined when absent or invalid. */
export function headerTrace(
  traceparent: string | undefined,
  tracestate: string | undefined,
): CarriedTrace | undefined {
  const ctx = parseTraceContext(traceparent, tracestate);
  if (!ctx) return undefined;
  return ctx.traceState === undefined
    ? { traceparent: formatTraceparent(ctx) }
    : { traceparent: formatTraceparent(ctx), tracestate: ctx.traceState };
}

/**
 * Reads one stream message. Entries without a usable id or received_at cannot be stored or even
 * dead-lettered (both tables are keyed by them), so they are returned separately as `invalid`.
 */
export function decodeEnvelope(
  data: Uint8Array,
  trace?: CarriedTrace,
): { messages: QueuedMessage[]; invalid: number } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return { messages: [], invalid: 1 };
  }
  const p = parsed as Partial<Envelope> & Partial<QueuedMessage>;
  if (p === null || typeof p !== 'object' || p.v !== 1) return { messages: [], invalid: 1 };
  const list: unknown[] = Array.isArray(p.messages) ? p.messages : [p];
  const messages: QueuedMessage[] = [];
  let invalid = 0;
  for (const m of list) {
    const q = m as Partial<QueuedMessage> | null;
    if (
      q &&
      typeof q === 'object' &&
      typeof q.id === 'string' &&
      UUID.test(q.id) &&
      typeof q.received_at === 'string' &&
      !Number.isNaN(Date.parse(q.received_at))
    ) {
      const message = q as QueuedMessage;
      if (trace && message.traceparent === undefined) {
        message.traceparent = trace.traceparent;
        if (trace.tracestate !== undefined) message.tracestate = trace.tracestate;
      }
      messages.push(message);
    } else invalid++;
  }
  return { messages, invalid };
}
