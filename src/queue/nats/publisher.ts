import { setTimeout as sleep } from 'node:timers/promises';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { uuidv7Time } from '../../contract/message-id.ts';
import type { QueuedMessage } from '../../contract/queued-message.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Queryable } from '../../store/pool.ts';
import { GroupCommit } from '../group-commit.ts';
import {
  IdempotencyKeyInFlightError,
  IdempotencyKeyReusedError,
  MessageTooLargeError,
  PublishOutcomeUnknownError,
  type PublishRequest,
  type PublishResult,
  QueueOverloadedError,
  type QueueProducer,
  QueueUnavailableError,
} from '../queue.ts';
import { raceUntil } from '../race-until.ts';
import {
  type CarriedTrace,
  dedupeKey,
  encodeEnvelope,
  envelopeMsgId,
  sharedTrace,
  splitBySize,
} from './envelope.ts';
import { isNoResponders, isRefusal, notAccepted } from './errors.ts';
import { type Claim, IdempotencyClaims } from './idempotency.ts';
import type { NatsLink } from './link.ts';
import { idempotencyBucket } from './provision.ts';
import { countQueuedForSubject, type SubjectScanOptions } from './subject-scan.ts';

/**
 * The API side of the NATS queue. Awaiting one JetStream ack per request caps intake at a small share of
 * what node:http can serve (docs/capacity-plan.md), so concurrent requests are grouped (GroupCommit: a short linger, a
 * bounded batch, bounded pending) and each group is published as ONE stream message, an envelope
 * (envelope.ts), whose PubAck is the durability proof for every message in it. A request resolves
 * only with its own group's ack, so `202` still means "on the stream, replicated".
 *
 * nats-server 2.9 has no atomic multi-message publish; an envelope is atomic by construction and costs
 * one ack and one duplicate-window entry per group instead of per message.
 *
 * Every failure says what became of the message (queue/errors.ts):
 * - never handed to NATS (not connected, the caller's deadline passed while it waited for a publish
 *   slot, a claim or size problem first), or refused by the server → not accepted
 *   (QueueUnavailableError, QueueFullError when the stream or store has no room);
 * - sent, and no ack by the deadline, or the connection lost before it came → PublishOutcomeUnknownError
 *   with the ids: the server may have stored it. Only a retry with the same Idempotency-Key is safe,
 *   and it maps to the same id (idempotency.ts).
 *
 * Idempotency-Key: see idempotency.ts. Chosen over Nats-Msg-Id = key because the duplicate window
 * would have to be as long as the idempotency window (it holds every message id published in it, in
 * server memory), and because keyed requests would then have to be published one per stream message.
 */
export interface NatsPublisherOptions {
  subject: string;
  lingerMs: number;
  maxBatch: number;
  maxPending: number;
  /** Envelopes awaiting their ack at once. */
  concurrency: number;
  /** A publish not acknowledged this long after the call fails, unless the caller's signal aborted it first. */
  timeoutMs: number;
  /** Bounds of queuedForSubject's stream scan. */
  subjectScan: Omit<SubjectScanOptions, 'subject'>;
}

/** A request on its way through a group, and how far it got. */
interface Item {
  req: PublishRequest;
  /** Handed to NATS: its envelope publish was sent (from here on a failure may hide a stored message). */
  sent: boolean;
  /** The caller gave up before it was sent: it must never be sent. */
  dropped: boolean;
  /** The id it is published (or known) under: the original one for an idempotent retry. */
  id: string;
  /** When the caller handed it over (epoch ms): the publish deadline counts from here. */
  submittedAt: number;
}

type ItemResult = PublishResult | Error;

/**
 * Margin on top of the publish timeout before a pending Idempotency-Key claim is taken over: the claim
 * is written before the publish starts, and the server's clock (the claim's age) may differ a little.
 */
const CLAIM_MARGIN_MS = 2000;

export class NatsPublisher implements QueueProducer {
  private readonly batcher: GroupCommit<Item, ItemResult>;
  private readonly claims: IdempotencyClaims;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly link: NatsLink,
    private readonly opts: NatsPublisherOptions,
    private readonly log: Logger,
  ) {
    this.batcher = new GroupCommit({
      lingerMs: opts.lingerMs,
      maxBatch: opts.maxBatch,
      maxPending: opts.maxPending,
      concurrency: opts.concurrency,
      flush: (items) => this.flush(items),
    });
    this.claims = new IdempotencyClaims(
      () => link.kv,
      () => link.jsm,
      `KV_${idempotencyBucket(link.settings.nats.stream)}`,
      opts.timeoutMs + CLAIM_MARGIN_MS,
    );
  }

  publish(requests: PublishRequest[], signal?: AbortSignal): Promise<PublishResult[]> {
    if (signal?.aborted) {
      return Promise.reject(new QueueUnavailableError('the deadline passed before the messages were sent'));
    }
    // Fail fast: the client would buffer publishes while reconnecting and answer only at the timeout.
    if (!this.link.isUsable()) return Promise.reject(new QueueUnavailableError('NATS is not connected'));
    // All of the call or none of it: a batch half admitted would be half published after a refusal.
    if (this.batcher.size + requests.length > this.opts.maxPending) {
      return Promise.reject(
        new QueueOverloadedError(`queue is overloaded (${this.batcher.size} publishes waiting)`),
      );
    }
    const now = Date.now();
    const items: Item[] = requests.map((req) => ({
      req,
      sent: false,
      dropped: false,
      id: req.message.id,
      submittedAt: now,
    }));
    const settled = Promise.all(items.map((it) => this.batcher.submit(it)));
    return new Promise<PublishResult[]>((resolve, reject) => {
      const onAbort = () => {
        for (const it of items) if (!it.sent) it.dropped = true;
        const sent = items.filter((it) => it.sent);
        reject(
          sent.length === 0
            ? new QueueUnavailableError('the deadline passed before the messages were sent')
            : new PublishOutcomeUnknownError(
                'NATS did not acknowledge before the deadline: the messages may have been accepted',
                sent.map((it) => it.id),
              ),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      settled
        .then(
          (results) => {
            const out = combine(results, items);
            if (out instanceof Error) reject(out);
            else resolve(out);
          },
          (err: unknown) => {
            // Not an item's result (refused at admission, or a fault in the flush): still true.
            const sent = items.filter((it) => it.sent).map((it) => it.id);
            reject(
              sent.length
                ? new PublishOutcomeUnknownError('publishing failed after sending', sent, { cause: err })
                : notAccepted(err, 'publishing failed before sending'),
            );
          },
        )
        .finally(() => signal?.removeEventListener('abort', onAbort));
    });
  }

  isReady(): boolean {
    return this.link.isReady();
  }

  async queuedForSubject(pseudonym: string): Promise<number> {
    const { js, jsm } = this.link;
    if (!js || !jsm || !this.link.isUsable()) throw new QueueUnavailableError('NATS is not connected');
    return countQueuedForSubject(
      js,
      jsm,
      { ...this.opts.subjectScan, subject: this.opts.subject },
      pseudonym,
      this.log,
    );
  }

  /** A stream message cannot be edited: the erasure's tombstone drops the subject's queued messages. */
  forgetSubject(_tx: Queryable, pseudonym: string): Promise<number> {
    return this.queuedForSubject(pseudonym);
  }

  /** The subject's claims in the Idempotency-Key bucket, and their index entries (idempotency.ts). */
  forgetIdempotencyKeys(_tx: Queryable, pseudonym: string): Promise<number> {
    if (!this.link.isUsable()) return Promise.reject(new QueueUnavailableError('NATS is not connected'));
    return this.claims.forgetSubject(pseudonym);
  }

  depth(): Promise<number | undefined> {
    return this.link.depth();
  }

  /** Waits for accepted publishes to be acknowledged (or fail); the connection is the link's. */
  close(): Promise<void> {
    this.closed ??= this.batcher.idle();
    return this.closed;
  }

  /** One group: claim keys, pack envelopes, publish them; one result (or error) per item. */
  private async flush(items: Item[]): Promise<ItemResult[]> {
    // Time spent waiting for a publish slot counts: the oldest request in the group sets the deadline.
    const deadline = Math.min(...items.map((it) => it.submittedAt)) + this.opts.timeoutMs;
    const results: ItemResult[] = new Array(items.length);
    // Keys given back are released before the group answers (within its deadline): a client retrying
    // at once after a refusal must find its key free, not "in flight".
    const releases: Promise<void>[] = [];
    const outgoing: Array<{ index: number; message: QueuedMessage; claim?: Claim }> = [];
    // The same key twice in one group: the later ones answer with the first one's outcome.
    const firstByKey = new Map<string, number>();
    const followers = new Map<number, number[]>();
    for (const [i, it] of items.entries()) {
      const key = it.req.idempotencyKey;
      const first = key === undefined ? undefined : firstByKey.get(key);
      if (it.dropped) results[i] = dropped();
      else if (key === undefined) outgoing.push({ index: i, message: it.req.message });
      else if (first !== undefined) followers.set(first, [...(followers.get(first) ?? []), i]);
      else firstByKey.set(key, i);
    }
    /** An item and the followers that share its key. */
    const withFollowers = (i: number) => [items[i]!, ...(followers.get(i) ?? []).map((f) => items[f]!)];
    await Promise.all(
      [...firstByKey].map(async ([key, i]) => {
        const { message, fingerprint, subject, rebind } = items[i]!.req;
        try {
          const claim = await this.claims.claim(key, message.id, fingerprint, subject);
          const id = claim.value.id;
          for (const it of withFollowers(i)) it.id = id;
          if (claim.kind === 'done') results[i] = { id, duplicate: true };
          else if (claim.kind === 'new') outgoing.push({ index: i, message, claim });
          else {
            // Published again under the original id: its ciphertexts are bound to that id (rebind).
            const again = rebind ? rebind(id) : { ...message, id, received_at: uuidv7Time(id).toISOString() };
            outgoing.push({ index: i, message: again, claim });
          }
        } catch (err) {
          results[i] =
            err instanceof IdempotencyKeyReusedError || err instanceof IdempotencyKeyInFlightError
              ? err
              : notAccepted(err, 'the idempotency key store did not answer');
        }
      }),
    );
    // Claims take a round trip: a caller may have given up meanwhile. What it dropped is never sent.
    const live = outgoing.filter((o) => {
      if (!items[o.index]!.dropped) return true;
      results[o.index] = dropped();
      if (o.claim) releases.push(this.release(o.claim));
      return false;
    });
    live.sort((a, b) => a.index - b.index);

    const parts = live.map((o) => JSON.stringify(o.message));
    const { ranges, tooLarge } = splitBySize(
      parts.map((p) => Buffer.byteLength(p)),
      this.link.maxEnvelopeBytes,
    );
    for (const t of tooLarge) {
      results[live[t]!.index] = new MessageTooLargeError(this.link.maxEnvelopeBytes);
      if (live[t]!.claim) releases.push(this.release(live[t]!.claim!));
    }
    await Promise.all(
      ranges.map(async ([start, end]) => {
        const group = live.slice(start, end);
        const ids = group.map((o) => o.message.id);
        const outcome = await this.publishEnvelope(
          encodeEnvelope(parts.slice(start, end)),
          envelopeMsgId(group.map((o) => dedupeKey(o.message))),
          deadline,
          () => {
            for (const o of group) for (const it of withFollowers(o.index)) it.sent = true;
          },
          ids,
          sharedTrace(group.map((o) => o.message)),
        );
        for (const o of group) {
          const r = items[o.index]!;
          results[o.index] = outcome ?? { id: r.id, duplicate: o.claim?.kind === 'republish' };
        }
        const claimed = group.flatMap((o) => (o.claim ? [o.claim] : []));
        if (outcome === undefined) await this.markDone(claimed);
        else if (!(outcome instanceof PublishOutcomeUnknownError))
          await Promise.all(claimed.map((c) => this.release(c)));
      }),
    );
    for (const [first, later] of followers) {
      const r = results[first]!;
      const firstFp = items[first]!.req.fingerprint;
      for (const i of later) {
        const { fingerprint } = items[i]!.req;
        if (fingerprint !== undefined && firstFp !== undefined && fingerprint !== firstFp) {
          results[i] = new IdempotencyKeyReusedError(items[first]!.id);
        } else results[i] = r instanceof Error ? r : { id: r.id, duplicate: true };
      }
    }
    if (releases.length) await raceUntil(Promise.all(releases), deadline);
    return results;
  }

  /**
   * Publishes one envelope; undefined once acknowledged, else the error that is true for its messages.
   * `onSend` runs just before the request goes out.
   */
  private async publishEnvelope(
    data: string,
    msgID: string,
    deadline: number,
    onSend: () => void,
    ids: string[],
    trace: CarriedTrace | undefined,
  ): Promise<Error | undefined> {
    const headers = trace ? traceHeaders(trace) : undefined;
    for (;;) {
      const js = this.link.js;
      const left = deadline - Date.now();
      if (!js || !this.link.isUsable()) return new QueueUnavailableError('NATS is not connected');
      if (left <= 0) return new QueueUnavailableError('the deadline passed before the messages were sent');
      const lost = this.link.whenDisconnected();
      try {
        onSend();
        // Same msgID on a retry: if an earlier attempt was stored after all, the server drops this one.
        await Promise.race([
          js.publish(this.opts.subject, data, { msgID, timeout: left, headers }),
          lost.promise,
        ]);
        this.link.markPublishOk();
        return undefined;
      } catch (err) {
        if (isNoResponders(err)) {
          // No stream took it (no leader right now, e.g. an election in a cluster): not stored.
          if (left > 250 && this.link.isUsable()) {
            await sleep(100);
            continue;
          }
          this.link.markPublishFailed(err);
          return notAccepted(err, 'no NATS stream took the messages');
        }
        this.link.markPublishFailed(err);
        if (isRefusal(err)) return notAccepted(err, 'NATS refused the messages');
        // A timeout, the connection lost with the request out: the server may have stored it.
        return new PublishOutcomeUnknownError(
          'NATS did not acknowledge in time: the messages may have been accepted',
          ids,
          { cause: err },
        );
      } finally {
        lost.cancel();
      }
    }
  }

  private async markDone(claims: Claim[]): Promise<void> {
    // A claim left pending only means a retry waits for the in-flight window, then publishes again.
    await Promise.all(
      claims.map((c) =>
        this.claims
          .done(c)
          .catch((err) => this.log.warn({ err }, 'could not mark an Idempotency-Key as done')),
      ),
    );
  }

  /** Gives a key back; never rejects (a claim left pending expires after the in-flight window). */
  private release(claim: Claim): Promise<void> {
    return this.claims
      .release(claim)
      .catch((err) => this.log.warn({ err }, 'could not release an Idempotency-Key claim'));
  }
}

/** The W3C headers of a stream message whose messages share one trace context (envelope.ts). */
function traceHeaders(trace: CarriedTrace) {
  const h = natsHeaders();
  h.set('traceparent', trace.traceparent);
  if (trace.tracestate !== undefined) h.set('tracestate', trace.tracestate);
  return h;
}

const dropped = () => new QueueUnavailableError('the deadline passed before the messages were sent');

/**
 * One answer for a call from its items' results. All acknowledged: the results. Otherwise an error
 * that is true for the whole call: when some items may be stored (acknowledged or unknown) and others
 * not, the call's outcome is partly unknown; when none can be, the first item's error says why.
 */
function combine(results: ItemResult[], items: Item[]): PublishResult[] | Error {
  const failed = results.filter((r): r is Error => r instanceof Error);
  if (failed.length === 0) return results as PublishResult[];
  const maybeStored = items.filter((_, i) => {
    const r = results[i]!;
    return !(r instanceof Error) || r instanceof PublishOutcomeUnknownError;
  });
  if (maybeStored.length === 0) return failed[0]!;
  if (maybeStored.length === items.length && failed.every((e) => e instanceof PublishOutcomeUnknownError)) {
    return new PublishOutcomeUnknownError(
      failed[0]!.message,
      maybeStored.map((it) => it.id),
      { cause: failed[0] },
    );
  }
  return new PublishOutcomeUnknownError(
    'part of the messages may have been accepted, part were not',
    maybeStored.map((it) => it.id),
    { cause: failed[0] },
  );
}
