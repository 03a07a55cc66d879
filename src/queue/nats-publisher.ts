import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { ProblemError } from '../http/problem.ts';
import { uuidv7Time } from '../store/messages.ts';
import type { Queryable } from '../store/pool.ts';
import { GroupCommit } from './group-commit.ts';
import { encodeEnvelope, envelopeMsgId, splitBySize } from './nats-envelope.ts';
import type { NatsLink } from './nats-queue.ts';
import {
  type PublishRequest,
  type PublishResult,
  type QueuedMessage,
  type QueueProducer,
  QueueUnavailableError,
} from './queue.ts';

/**
 * The API side of the NATS queue. Awaiting one JetStream ack per request caps intake at ~18 % of what
 * node:http can serve (FACTS), so concurrent requests are grouped (GroupCommit: a short linger, a
 * bounded batch, bounded pending) and each group is published as ONE stream message, an envelope
 * (nats-envelope.ts), whose PubAck is the durability proof for every message in it. A request resolves
 * only with its own group's ack, so `202` still means "on the stream, replicated".
 *
 * nats-server 2.9 has no atomic multi-message publish; an envelope is atomic by construction and costs
 * one ack and one duplicate-window entry per group instead of per message.
 *
 * Idempotency-Key: a JetStream KV bucket maps sha256(scoped key) → message id, with the idempotency
 * window as its max age. `kv.create` succeeds for exactly one claimant; a retry finds the claim and
 * gets the original id. The retry's message is then published AGAIN under that original id (and
 * received_at, which derives from it): if the first attempt never reached the stream (NATS failed after
 * the claim), this is what makes the id it was promised durable; if it did, the database's idempotent
 * insert keeps one row. Chosen over Nats-Msg-Id = key because the duplicate window would have to be as
 * long as the idempotency window (it holds every message id published in it, in server memory), and
 * because keyed requests would then have to be published one per stream message.
 */
export interface NatsPublisherOptions {
  subject: string;
  lingerMs: number;
  maxBatch: number;
  maxPending: number;
  /** Envelopes awaiting their ack at once. */
  concurrency: number;
  /** A publish not acknowledged within this fails (`503`). */
  timeoutMs: number;
}

type ItemResult = PublishResult | Error;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class NatsPublisher implements QueueProducer {
  private readonly batcher: GroupCommit<PublishRequest, ItemResult>;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly link: NatsLink,
    private readonly opts: NatsPublisherOptions,
  ) {
    this.batcher = new GroupCommit({
      lingerMs: opts.lingerMs,
      maxBatch: opts.maxBatch,
      maxPending: opts.maxPending,
      concurrency: opts.concurrency,
      flush: (reqs) => this.flush(reqs),
    });
  }

  publish(requests: PublishRequest[]): Promise<PublishResult[]> {
    // Fail fast: the client would buffer publishes while reconnecting and answer only at the timeout.
    if (!this.link.isUsable()) return Promise.reject(new QueueUnavailableError('NATS is not connected'));
    return Promise.all(
      requests.map((r) =>
        this.batcher.submit(r).then((res) => {
          if (res instanceof Error) throw res;
          return res;
        }),
      ),
    );
  }

  isReady(): boolean {
    return this.link.isReady();
  }

  /** Not counted yet on JetStream (being built: a scan of the stream above the writer's ack floor). */
  async queuedForSubject(_pseudonym: string): Promise<number> {
    return 0;
  }

  /** A stream message cannot be edited: the erasure's tombstone drops the subject's queued messages. */
  forgetSubject(_tx: Queryable, pseudonym: string): Promise<number> {
    return this.queuedForSubject(pseudonym);
  }

  depth(): Promise<number | undefined> {
    return this.link.depth();
  }

  /** Waits for accepted publishes to be acknowledged (or fail), then lets go of the connection. */
  close(): Promise<void> {
    this.closed ??= this.batcher.idle().then(() => this.link.release());
    return this.closed;
  }

  /** One group: claim keys, pack envelopes, publish them; one result (or error) per request. */
  private async flush(reqs: PublishRequest[]): Promise<ItemResult[]> {
    const deadline = Date.now() + this.opts.timeoutMs;
    const results: ItemResult[] = new Array(reqs.length);
    const outgoing: Array<{ index: number; message: QueuedMessage }> = [];
    // The same key twice in one group: the later ones answer with the first one's outcome.
    const firstByKey = new Map<string, number>();
    const followers: Array<[number, number]> = [];
    for (const [i, r] of reqs.entries()) {
      const key = r.idempotencyKey;
      if (key === undefined) {
        outgoing.push({ index: i, message: r.message });
        results[i] = { id: r.message.id, duplicate: false };
      } else if (firstByKey.has(key)) {
        followers.push([i, firstByKey.get(key)!]);
      } else firstByKey.set(key, i);
    }
    await Promise.all(
      [...firstByKey].map(async ([key, i]) => {
        const message = reqs[i]!.message;
        try {
          const original = await this.claim(key, message.id);
          if (original === undefined) {
            outgoing.push({ index: i, message });
            results[i] = { id: message.id, duplicate: false };
          } else {
            const received_at = uuidv7Time(original).toISOString();
            outgoing.push({ index: i, message: { ...message, id: original, received_at } });
            results[i] = { id: original, duplicate: true };
          }
        } catch (err) {
          results[i] = this.unavailable('the idempotency key store did not answer', err);
        }
      }),
    );
    outgoing.sort((a, b) => a.index - b.index);

    const parts = outgoing.map((o) => JSON.stringify(o.message));
    const { ranges, tooLarge } = splitBySize(
      parts.map((p) => Buffer.byteLength(p)),
      this.link.maxEnvelopeBytes,
    );
    for (const t of tooLarge) {
      results[outgoing[t]!.index] = new ProblemError(
        'BODY_TOO_LARGE',
        `the message is larger than the queue accepts (${this.link.maxEnvelopeBytes} bytes)`,
      );
    }
    await Promise.all(
      ranges.map(async ([start, end]) => {
        const group = outgoing.slice(start, end);
        try {
          await this.publishEnvelope(
            encodeEnvelope(parts.slice(start, end)),
            envelopeMsgId(group.map((o) => o.message.id)),
            deadline,
          );
        } catch (err) {
          const e = err instanceof QueueUnavailableError ? err : this.unavailable('NATS publish failed', err);
          for (const o of group) results[o.index] = e;
        }
      }),
    );
    for (const [i, first] of followers) {
      const r = results[first]!;
      results[i] = r instanceof Error ? r : { id: r.id, duplicate: true };
    }
    return results;
  }

  private async publishEnvelope(data: string, msgID: string, deadline: number): Promise<void> {
    const js = this.link.js;
    if (!js || !this.link.isUsable()) throw new QueueUnavailableError('NATS is not connected');
    for (;;) {
      const left = deadline - Date.now();
      const lost = this.link.whenDisconnected();
      try {
        if (left <= 0) throw new QueueUnavailableError('NATS did not acknowledge in time');
        // Same msgID on a retry: if the first attempt was stored after all, the server drops this one.
        await Promise.race([js.publish(this.opts.subject, data, { msgID, timeout: left }), lost.promise]);
        this.link.markPublishOk();
        return;
      } catch (err) {
        // No responders: the stream has no leader right now (election in a cluster). Worth a retry.
        if ((err as Error).name === 'JetStreamNotEnabled' && left > 250 && this.link.isUsable()) {
          await sleep(100);
          continue;
        }
        this.link.markPublishFailed(err);
        throw err instanceof QueueUnavailableError
          ? err
          : new QueueUnavailableError('NATS did not acknowledge the messages', { cause: err });
      } finally {
        lost.cancel();
      }
    }
  }

  /**
   * Claims an Idempotency-Key for `id`. Returns undefined when this request owns the key, or the id
   * the key was first used for.
   */
  private async claim(scopedKey: string, id: string): Promise<string | undefined> {
    const kv = this.link.kv;
    if (!kv) throw new QueueUnavailableError('NATS idempotency bucket is not open yet');
    // Hashed: KV keys must be subject tokens, and the client's key never appears on the wire.
    const key = createHash('sha256').update(scopedKey).digest('hex');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await kv.create(key, id);
        return undefined;
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamWrongLastSequence)
          throw err;
      }
      const entry = await kv.get(key);
      if (entry && entry.operation === 'PUT') {
        const original = entry.string();
        if (!UUID.test(original))
          throw new Error(`idempotency entry holds no message id: ${original.slice(0, 40)}`);
        return original;
      }
      // The claim expired between create and get: claim again.
    }
    throw new Error('idempotency key could not be claimed or read');
  }

  private unavailable(what: string, cause: unknown): QueueUnavailableError {
    return new QueueUnavailableError(what, { cause });
  }
}
