import { createHash } from 'node:crypto';
import type { QueuedMessage } from '../../contract/queued-message.ts';

/**
 * The on-stream format of the NATS queue (docs/queue-format.md). One stream message carries a group of
 * queued messages that were published together, so one JetStream ack covers the whole group:
 *
 *     {"v":1,"messages":[<QueuedMessage>, ...]}
 *
 * A bare QueuedMessage (`{"v":1,"id":...}`) is read as a group of one, so other producers may publish
 * single messages. The `Nats-Msg-Id` of a group is derived from its message ids (envelopeMsgId), so a
 * retried publish of the same group inside the duplicate window is dropped by the server.
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

/**
 * Reads one stream message. Entries without a usable id or received_at cannot be stored or even
 * dead-lettered (both tables are keyed by them), so they are returned separately as `invalid`.
 */
export function decodeEnvelope(data: Uint8Array): { messages: QueuedMessage[]; invalid: number } {
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
      messages.push(q as QueuedMessage);
    } else invalid++;
  }
  return { messages, invalid };
}
