import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { decodeEnvelope } from './nats-envelope.ts';
import type { NatsLink } from './nats-queue.ts';
import type { Batch, Delivery, Outcome, QueueConsumer, QueuedMessage } from './queue.ts';

/**
 * The worker side of the NATS queue: a durable pull consumer read through one `consume()` iterator
 * whose prefetch is bounded in bytes. A batch is a whole number of envelopes (a stream message is
 * never split between batches), so each envelope is settled exactly once:
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
  /** Bytes of envelopes pulled ahead of the worker (default 16 MiB). */
  prefetchBytes?: number;
}

interface Held {
  msg: JsMsg;
  messages: QueuedMessage[];
}

type Next = IteratorResult<JsMsg, unknown>;

export class NatsConsumer implements QueueConsumer {
  private messages: ConsumerMessages | undefined;
  private iter: AsyncIterator<JsMsg> | undefined;
  /** An iterator read that outlived the receive() that started it (abort, timeout): reused next time. */
  private pendingNext: Promise<Next> | undefined;
  /** Envelopes to hand out before new ones: released ones (after their delay) and a batch's overflow. */
  private parked: Array<{ held: Held; dueAt: number }> = [];
  /** Delivered and not yet settled: kept alive with working(). */
  private readonly held = new Set<Held>();
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
      const h = await this.take(signal, nextDue);
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

  /** Waits for the next decodable envelope until `until` (epoch ms) or abort; undefined if none. */
  private async take(signal: AbortSignal, until: number): Promise<Held | undefined> {
    while (!signal.aborted && Date.now() < until) {
      let r: Next | undefined;
      try {
        const iter = await this.iterator();
        this.pendingNext ??= iter.next();
        r = await raceUntil(this.pendingNext, signal, until);
      } catch (err) {
        // Disconnected, or the iterator failed: a batch being collected is still returned, and the
        // next receive() starts a fresh iterator.
        this.link.log.warn({ err }, 'NATS consumer read failed; retrying');
        this.pendingNext = undefined;
        this.iter = undefined;
        this.messages?.stop();
        this.messages = undefined;
        await sleep(1000, undefined, { signal }).catch(() => {});
        continue;
      }
      if (r === undefined) return undefined;
      this.pendingNext = undefined;
      if (r.done) {
        // The iterator ended (connection closed, consumer deleted): start a new one after a pause.
        this.iter = undefined;
        this.messages = undefined;
        this.link.reprovision();
        await sleep(250, undefined, { signal }).catch(() => {});
        continue;
      }
      const held = this.decode(r.value);
      if (held) return held;
    }
    return undefined;
  }

  private async iterator(): Promise<AsyncIterator<JsMsg>> {
    if (this.iter) return this.iter;
    const js = this.link.js!;
    const consumer = await js.consumers.get(this.opts.stream, this.opts.consumer);
    // Bounded in bytes, not messages: envelopes hold 1 to INTAKE_ENQUEUE_MAX_BATCH messages.
    this.messages = await consumer.consume({
      max_bytes: this.opts.prefetchBytes ?? 16 * 1024 * 1024,
      // Pull requests live on the consumer's leader; if it dies they are gone without a word. Short
      // requests (idle heartbeat every 2.5 s, two missed → re-pull) find the new leader within ~5 s
      // instead of the default ~30 s.
      expires: 5000,
    });
    this.watch(this.messages);
    this.iter = this.messages[Symbol.asyncIterator]();
    return this.iter;
  }

  /** A deleted consumer or stream is recreated instead of leaving the worker idle. */
  private watch(messages: ConsumerMessages): void {
    (async () => {
      for await (const s of messages.status()) {
        if (
          s.type === 'consumer_not_found' ||
          s.type === 'stream_not_found' ||
          s.type === 'consumer_deleted'
        ) {
          this.link.log.warn({ status: s.type }, 'NATS consumer missing; re-provisioning');
          this.link.reprovision();
        }
      }
    })().catch(() => {});
  }

  private decode(msg: JsMsg): Held | undefined {
    const { messages, invalid } = decodeEnvelope(msg.data);
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
      },
    };
  }

  /** Envelopes (stream messages) waiting or delivered and unacknowledged, not queued messages. */
  async depth(): Promise<number | undefined> {
    const jsm = this.link.jsm;
    if (!jsm || !this.link.isUsable()) return undefined;
    const info = await jsm.consumers.info(this.opts.stream, this.opts.consumer);
    return info.num_pending + info.num_ack_pending;
  }

  /**
   * Hands back what was pulled but not processed (parked and prefetched envelopes) with nak, so another
   * worker gets them now rather than after ack_wait; then lets go of the connection. Call after the
   * worker stopped. Idempotent.
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
    const messages = this.messages;
    const iter = this.iter;
    if (messages && iter) {
      messages.stop(); // queued after what is already buffered, which can still be read and handed back
      const deadline = Date.now() + 1000;
      for (;;) {
        const r = await raceUntil(this.pendingNext ?? iter.next(), new AbortController().signal, deadline);
        this.pendingNext = undefined;
        if (!r || r.done) break;
        r.value.nak();
      }
    }
    await this.link.release();
  }
}

/** Resolves with the promise's value, or undefined on abort or at `until` (the promise keeps running). */
async function raceUntil<T>(p: Promise<T>, signal: AbortSignal, until: number): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  const ms = until - Date.now();
  if (ms <= 0) return undefined;
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([
      p,
      sleep(Number.isFinite(ms) ? ms : 2 ** 31 - 1, undefined, { signal: ac.signal }).catch(() => undefined),
    ]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    ac.abort();
  }
}
