import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Consumer,
  type ConsumerMessages,
  JetStreamApiCodes,
  JetStreamApiError,
  JetStreamError,
  type JsMsg,
} from '@nats-io/jetstream';
import type { QueuedMessage } from '../../contract/queued-message.ts';
import type { Batch, Delivery, Outcome, QueueConsumer } from '../queue.ts';
import { raceUntil } from '../race-until.ts';
import { decodeEnvelope, headerTrace } from './envelope.ts';
import type { NatsLink } from './link.ts';

/**
 * The worker side of the NATS queue: a durable pull consumer read with one `fetch()` pull request at a
 * time (≤ 64 envelopes, 2 s expiry), the next one sent when it completes. Bounded in envelopes, not
 * bytes: with nats-server 2.9 a max_bytes fetch stopped delivering part-way and only ended on missed
 * heartbeats (measured), so the bound is 64 × INTAKE_ENQUEUE_MAX_BATCH messages.
 * Not `consume()`: its refills are sent as soon as the iterator is read, so at shutdown there is always
 * a request outstanding whose envelopes reach an unsubscribed inbox and wait out ack_wait; a fetch
 * ends by itself, and close() hands back (nak) everything it brings.
 * A batch is a whole number of envelopes (a stream message is never split between batches), so each
 * envelope is settled exactly once:
 * - every message stored or dead-lettered → ack (term when all were dead-lettered, for the advisory);
 * - any message to retry → nak(delay): the envelope comes back whole, and the messages already stored
 *   are skipped by the idempotent insert;
 * - nothing stored (database down) → release(): the envelopes are PARKED here and handed out again
 *   after the delay, kept alive with working() meanwhile. Handing them back with nak would count a
 *   delivery each time and a long database outage would exhaust max_deliver, after which the server
 *   stops delivering them: parking keeps database outages out of the attempt count.
 * Held envelopes get working() every third of ack_wait, so a slow commit never causes a redelivery.
 */
export interface NatsConsumerOptions {
  stream: string;
  consumer: string;
  ackWaitMs: number;
}

interface Held {
  msg: JsMsg;
  messages: QueuedMessage[];
}

type Next = IteratorResult<JsMsg, unknown>;

/** A pull request's life: short, so a consumer leader lost in a cluster is noticed in ~2 s (heartbeats). */
const FETCH_EXPIRES_MS = 2000;
/** Envelopes per pull request: what a worker holds ahead of its current batch. */
const FETCH_ENVELOPES = 64;

export class NatsConsumer implements QueueConsumer {
  private consumer: Consumer | undefined;
  private messages: ConsumerMessages | undefined;
  private iter: AsyncIterator<JsMsg> | undefined;
  /** An iterator read that outlived the receive() that started it (abort, timeout): reused next time. */
  private pendingNext: Promise<Next> | undefined;
  /** Envelopes to hand out before new ones: released ones (after their delay) and a batch's overflow. */
  private parked: Array<{ held: Held; dueAt: number }> = [];
  /** Delivered and not yet settled: kept alive with working(). */
  private readonly held = new Set<Held>();
  /**
   * Set while a receive waits for its first envelope: release() calls it, so that the receive also
   * waits for the envelope just parked, whose time may come before any new stream message does.
   */
  private wakeReceive: (() => void) | undefined;
  private readonly heartbeat: NodeJS.Timeout;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly link: NatsLink,
    private readonly opts: NatsConsumerOptions,
  ) {
    this.heartbeat = setInterval(
      () => {
        if (!this.link.isUsable()) return;
        for (const h of this.held) h.msg.working();
      },
      Math.max(500, Math.min(opts.ackWaitMs / 3, 10_000)),
    );
    this.heartbeat.unref();
  }

  async receive(opts: { max: number; maxWaitMs: number; signal: AbortSignal }): Promise<Batch | null> {
    const { signal } = opts;
    if (!(await this.link.whenUsable(signal))) return null;
    const batch: Held[] = [];
    let count = 0;
    const add = (h: Held): boolean => {
      if (batch.length > 0 && count + h.messages.length > opts.max) {
        this.parked.unshift({ held: h, dueAt: 0 }); // first in line for the next batch
        return false;
      }
      batch.push(h);
      count += h.messages.length;
      return count < opts.max;
    };
    // Parked envelopes that are due go first.
    const now = Date.now();
    while (this.parked.length && this.parked[0]!.dueAt <= now && count < opts.max) {
      if (!add(this.parked.shift()!.held)) break;
    }
    while (batch.length === 0) {
      if (signal.aborted) return null;
      const nextDue = this.parked.reduce((t, p) => Math.min(t, p.dueAt), Number.POSITIVE_INFINITY);
      const h = await this.takeOrWake(signal, nextDue);
      if (h) add(h);
      else {
        const i = this.parked.findIndex((p) => p.dueAt <= Date.now());
        if (i >= 0) add(this.parked.splice(i, 1)[0]!.held);
      }
    }
    const until = Date.now() + opts.maxWaitMs;
    while (count < opts.max && Date.now() < until) {
      const h = await this.take(signal, until);
      if (!h || !add(h)) break;
    }
    return this.toBatch(batch);
  }

  /**
   * take(), also ended (undefined) when release() parks an envelope meanwhile: a receive that started
   * waiting before the park (the worker receives the next batch while it stores one) would otherwise
   * wait for a new stream message only, and without traffic the released batch would never be retried.
   * One AbortController per batch's first wait, not per envelope.
   */
  private async takeOrWake(signal: AbortSignal, until: number): Promise<Held | undefined> {
    const waiting = new AbortController();
    const wake = () => waiting.abort();
    signal.addEventListener('abort', wake, { once: true });
    this.wakeReceive = wake;
    try {
      return await this.take(waiting.signal, until);
    } finally {
      this.wakeReceive = undefined;
      signal.removeEventListener('abort', wake);
    }
  }

  /** Waits for the next decodable envelope until `until` (epoch ms) or abort; undefined if none. */
  private async take(signal: AbortSignal, until: number): Promise<Held | undefined> {
    while (!signal.aborted && Date.now() < until) {
      let r: Next | undefined;
      try {
        const iter = await this.iterator();
        this.pendingNext ??= iter.next();
        r = await raceUntil(this.pendingNext, until, signal);
      } catch (err) {
        // Disconnected, heartbeats missed (leader lost), consumer deleted: a batch being collected is
        // still returned, and the next call starts a fresh request.
        this.link.log.warn({ err }, 'NATS consumer read failed; retrying');
        if (isGone(err)) this.link.reprovision();
        this.pendingNext = undefined;
        this.iter = undefined;
        this.messages = undefined;
        this.consumer = undefined;
        await sleep(1000, undefined, { signal }).catch(() => {});
        continue;
      }
      if (r === undefined) return undefined;
      this.pendingNext = undefined;
      if (r.done) {
        // This pull request is complete (batch delivered or expired): the next one is sent now.
        this.iter = undefined;
        this.messages = undefined;
        continue;
      }
      const held = this.decode(r.value);
      if (held) return held;
    }
    return undefined;
  }

  private async iterator(): Promise<AsyncIterator<JsMsg>> {
    if (this.iter) return this.iter;
    this.consumer ??= await this.link.js!.consumers.get(this.opts.stream, this.opts.consumer);
    this.messages = await this.consumer.fetch({ max_messages: FETCH_ENVELOPES, expires: FETCH_EXPIRES_MS });
    this.iter = this.messages[Symbol.asyncIterator]();
    return this.iter;
  }

  private decode(msg: JsMsg): Held | undefined {
    const trace = msg.headers
      ? headerTrace(msg.headers.get('traceparent') || undefined, msg.headers.get('tracestate') || undefined)
      : undefined;
    const { messages, invalid } = decodeEnvelope(msg.data, trace);
    if (invalid) {
      // Without an id there is nothing to store or dead-letter; the stream keeps the original.
      this.link.log.error(
        { stream: this.opts.stream, seq: msg.seq, invalid, valid: messages.length },
        'stream message holds entries that are not queued messages (format v1); skipping them',
      );
    }
    if (messages.length === 0) {
      msg.term();
      return undefined;
    }
    const h = { msg, messages };
    this.held.add(h);
    return h;
  }

  private toBatch(envelopes: Held[]): Batch {
    const deliveries: Delivery[] = [];
    for (const h of envelopes) {
      const attempt = h.msg.info.deliveryCount;
      for (const message of h.messages) deliveries.push({ message, attempt });
    }
    let settled = false;
    return {
      deliveries,
      // The stream cannot lose a message to an erasure; the tombstone check in the insert drops them.
      stillQueuedInTransaction: async () => deliveries.map(() => true),
      settleInTransaction: async () => {},
      acknowledge: async (outcomes: Outcome[]) => {
        if (settled) return;
        settled = true;
        let i = 0;
        for (const h of envelopes) {
          const own = outcomes.slice(i, i + h.messages.length);
          i += h.messages.length;
          this.held.delete(h);
          const retries = own.filter((o) => o.kind === 'retry');
          if (retries.length) {
            h.msg.nak(Math.max(...retries.map((o) => (o.kind === 'retry' ? o.delayMs : 0))));
          } else if (own.every((o) => o.kind === 'dead-lettered')) {
            // Without a reason: nats-server 2.9 ignores "+TERM <reason>" and would redeliver.
            h.msg.term();
          } else h.msg.ack();
        }
      },
      release: async (delayMs: number) => {
        if (settled) return;
        settled = true;
        const dueAt = Date.now() + delayMs;
        for (const h of envelopes) this.parked.push({ held: h, dueAt });
        this.wakeReceive?.();
      },
    };
  }

  /** Envelopes (stream messages) waiting or delivered and unacknowledged, not queued messages. */
  depth(): Promise<number | undefined> {
    return this.link.depth();
  }

  /**
   * Hands back what was pulled but not processed (parked envelopes, and all that the last pull request
   * brings until it ends, at most FETCH_EXPIRES_MS) with nak, so another worker gets them now rather
   * than after ack_wait. The connection is the link's. Call after the worker stopped. Idempotent.
   */
  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const { held } of this.parked.splice(0)) {
      held.msg.nak();
      this.held.delete(held);
    }
    const iter = this.iter;
    if (iter && this.link.isUsable()) {
      const deadline = Date.now() + FETCH_EXPIRES_MS + 1000;
      try {
        for (;;) {
          const r = await raceUntil(this.pendingNext ?? iter.next(), deadline);
          this.pendingNext = undefined;
          if (!r || r.done) break;
          r.value.nak();
        }
      } catch (err) {
        // The pull failed while being drained (heartbeats missed under load, connection lost): what it
        // still held comes back after ack_wait, as after a crash. Closing must not fail on it.
        this.link.log.warn(
          { err },
          'NATS consumer: drain on close failed; held messages return after ack_wait',
        );
      }
      this.messages?.stop();
    }
  }
}

/**
 * The stream or the consumer no longer exists (deleted by an operator, lost with a server's store): the
 * lookup of the consumer answers the API codes ConsumerNotFound / StreamNotFound, and a pull that was
 * waiting when it went away ends with a 409 status error ("Consumer Deleted", "Stream Deleted"). Read from
 * the client's typed errors, never from message text.
 */
function isGone(err: unknown): boolean {
  if (err instanceof JetStreamApiError)
    return err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound;
  return err instanceof JetStreamError && (err as JetStreamError & { code?: number }).code === 409;
}
