import type { Logger } from '../../ops/logger.ts';
import { DeadlineExceededError, isRefusedBeforeCommit, isRolledBackStatement } from '../../store/errors.ts';
import type { Queryable } from '../../store/pool.ts';
import { type Pool, type PoolClient, withClientUntil } from '../../store/pool.ts';
import {
  claimIdempotencyKeys,
  countQueued,
  countQueuedForSubject,
  deleteIdempotencyKeysForSubject,
  deleteQueuedForSubject,
  ENQUEUE_CHUNK,
  enqueueMessages,
  type IdempotencyRecord,
  readIdempotencyKeys,
  releaseIdempotencyKeys,
  touchIdempotencyKeys,
} from '../../store/queue-table.ts';
import { inTransaction } from '../../store/transactions.ts';
import {
  IdempotencyKeyReusedError,
  PublishOutcomeUnknownError,
  QueueFullError,
  QueueUnavailableError,
} from '../errors.ts';
import { GroupCommit } from '../group-commit.ts';
import type { PublishRequest, PublishResult, QueueProducer } from '../queue.ts';

/**
 * The API side of the embedded default queue: a table in the same PostgreSQL as the messages.
 *
 * Concurrent publishes are grouped (GroupCommit) into one transaction, so `202` means committed without
 * one fsync per request. One call (a single message, or a whole HTTP batch) is never split between
 * transactions: it is accepted or refused as a whole.
 *
 * The answer is always true (queue/errors.ts) and comes by the publish deadline, counted from when the
 * group's oldest call arrived. At the deadline the statement still running is cancelled and its
 * connection dropped (store/pool.ts withClientUntil): a statement cancelled before COMMIT (a locked or
 * slow queue) committed nothing, so "not accepted" is certain. Only when the COMMIT was sent and not
 * confirmed (connection lost, server crashed mid-commit, or a COMMIT still waiting for a synchronous
 * standby, which PostgreSQL keeps committed locally when cancelled) is the outcome unknown, and the
 * caller is told so. Idempotency-Keys are claimed in the same transaction as the messages they name, so
 * a key that exists always names a committed message.
 */
export interface PgProducerOptions {
  lingerMs: number;
  maxBatch: number;
  maxPending: number;
  /** Messages the queue table may hold; beyond it publishes are refused with QueueFullError. */
  maxQueued: number;
  /** Transactions in flight at once (default 4). */
  concurrency?: number;
  /** How often the queue's size is sampled for the cap and the depth gauge (default 1000 ms). */
  sampleMs?: number;
  /**
   * The publish deadline (INTAKE_PUBLISH_TIMEOUT_MS): a group's write is answered by this long after its
   * oldest call arrived (default 2000 ms).
   */
  timeoutMs?: number;
}

type CallResult = PublishResult[] | Error;

export class PgQueueProducer implements QueueProducer {
  private readonly batcher: GroupCommit<PublishRequest[], CallResult>;
  private ready = true;
  private queued: number | undefined;
  private readonly timer: NodeJS.Timeout;
  private closed: Promise<void> | undefined;
  /** When each call arrived, for its group's deadline. */
  private readonly arrivals = new WeakMap<PublishRequest[], number>();

  /** `pool` is the producer's own: its statement and lock timeouts are the publish deadline. */
  constructor(
    private readonly pool: Pool,
    private readonly opts: PgProducerOptions,
    private readonly log?: Logger,
  ) {
    this.batcher = new GroupCommit({
      lingerMs: opts.lingerMs,
      maxBatch: opts.maxBatch,
      maxPending: opts.maxPending,
      concurrency: opts.concurrency ?? 4,
      flush: (calls) => this.flush(calls),
      weight: (call) => call.length,
      keys: (call) => call.flatMap((r) => (r.idempotencyKey === undefined ? [] : [r.idempotencyKey])),
    });
    // Readiness must recover by itself (while not ready no traffic arrives to prove the database is
    // back), and the size cap needs a recent count: one bounded count does both.
    this.timer = setInterval(() => this.sample(), opts.sampleMs ?? 1000);
    this.timer.unref();
    this.sample();
  }

  async publish(requests: PublishRequest[], signal?: AbortSignal): Promise<PublishResult[]> {
    if (this.queued !== undefined && this.queued >= this.opts.maxQueued) {
      throw new QueueFullError(
        `the queue holds ${this.queued} messages, its limit (INTAKE_QUEUE_MAX_MESSAGES); the worker is behind`,
      );
    }
    this.arrivals.set(requests, Date.now());
    const out = await this.batcher.submit(requests, signal);
    if (out instanceof Error) throw out;
    return out;
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Messages in the queue table at the last sample (undefined until the first one answered). */
  async depth(): Promise<number | undefined> {
    return this.queued;
  }

  queuedForSubject(pseudonym: string): Promise<number> {
    return countQueuedForSubject(this.pool, pseudonym);
  }

  /** Inside the erasure's transaction: the subject's queued messages are deleted with it. */
  forgetSubject(tx: Queryable, pseudonym: string): Promise<number> {
    return deleteQueuedForSubject(tx, pseudonym);
  }

  /** Inside the erasure's transaction: the subject's Idempotency-Key rows go with its messages. */
  forgetIdempotencyKeys(tx: Queryable, pseudonym: string): Promise<number> {
    return deleteIdempotencyKeysForSubject(tx, pseudonym);
  }

  /** Waits for publishes already accepted to commit, then closes the producer's pool. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearInterval(this.timer);
      await this.batcher.idle();
      await this.pool.end();
    })();
    return this.closed;
  }

  private sample(): void {
    countQueued(this.pool, this.opts.maxQueued + 1).then(
      (n) => {
        this.queued = n;
        this.ready = true;
      },
      () => {
        this.ready = false;
      },
    );
  }

  /** One transaction for the whole group; one result (or error) per call. */
  private async flush(calls: PublishRequest[][]): Promise<CallResult[]> {
    const messages = calls.flat();
    let arrived = Number.POSITIVE_INFINITY;
    for (const call of calls) arrived = Math.min(arrived, this.arrivals.get(call) ?? Date.now());
    const until = arrived + (this.opts.timeoutMs ?? 2000);
    if (messages.length <= ENQUEUE_CHUNK && messages.every((r) => r.idempotencyKey === undefined)) {
      return this.flushOneStatement(calls, messages, until);
    }
    const state = { commitSent: false };
    let planned: CallResult[] | undefined;
    try {
      const results = await withClientUntil(this.pool, until, (client, deadline) =>
        inTransaction(
          client,
          async () => {
            const plan = await this.plan(client, calls);
            planned = plan.results;
            if (plan.fresh.length) await enqueueMessages(client, plan.fresh);
            if (plan.release.length) await releaseIdempotencyKeys(client, plan.release);
            return plan.results;
          },
          {
            state,
            beforeCommit: () => {
              if (deadline.passed) throw new DeadlineExceededError('the deadline passed before COMMIT');
            },
          },
        ),
      );
      this.ready = true;
      return results;
    } catch (err) {
      return this.failed(err, state.commitSent && !isRefusedBeforeCommit(err), calls, planned);
    }
  }

  /**
   * The common group, with no Idempotency-Key and within one statement: one INSERT in its own implicit
   * transaction, one round trip instead of BEGIN, INSERT and COMMIT (the bench's profile had the three
   * round trips among the API's costs per message: docs/capacity-plan.md#measurements-behind-choices-in-the-code). The statement is its own commit: an error the
   * server answered with (a SQLSTATE, other than a dropped connection) rolled it back, while no answer
   * at all leaves the outcome unknown.
   */
  private async flushOneStatement(
    calls: PublishRequest[][],
    messages: PublishRequest[],
    until: number,
  ): Promise<CallResult[]> {
    let sent = false;
    try {
      await withClientUntil(this.pool, until, (client) => {
        sent = true;
        return enqueueMessages(
          client,
          messages.map((r) => r.message),
        );
      });
    } catch (err) {
      return this.failed(err, sent && !isRolledBackStatement(err), calls);
    }
    this.ready = true;
    return calls.map((call) => call.map((r) => ({ id: r.message.id, duplicate: false })));
  }

  /**
   * The errors that are true for each call of a group that failed: not queued, or (`unknown`) perhaps
   * queued, each call told only its own ids (the original ids for a duplicate, when the plan got that
   * far) and a call the plan refused keeping its refusal.
   */
  private failed(
    err: unknown,
    unknown: boolean,
    calls: PublishRequest[][],
    planned?: CallResult[],
  ): CallResult[] {
    this.ready = false;
    if (!unknown) {
      this.log?.warn({ err }, 'Postgres queue refused a publish; nothing of it was committed');
      const refused = new QueueUnavailableError(
        'PostgreSQL queue did not take the messages; nothing was queued',
        { cause: err },
      );
      return calls.map(() => refused);
    }
    this.log?.error({ err, calls: calls.length }, 'Postgres queue COMMIT not confirmed: outcome unknown');
    return calls.map((call, i) => {
      const plan = planned?.[i];
      if (plan instanceof Error) return plan;
      return new PublishOutcomeUnknownError(
        'PostgreSQL did not confirm the commit: the messages may or may not be queued',
        plan ? plan.map((r) => r.id) : call.map((r) => r.message.id),
        { cause: err },
      );
    });
  }

  /**
   * Claims the group's Idempotency-Keys and decides each call's fate: new messages to enqueue,
   * duplicates answered with the original id, or refusal (a key reused with another body). The keys a
   * refused call claimed are released again, so a refused call leaves nothing behind.
   */
  private async plan(
    client: PoolClient,
    calls: PublishRequest[][],
  ): Promise<{ results: CallResult[]; fresh: PublishRequest['message'][]; release: string[] }> {
    const keyed = calls.flatMap((call) => call.filter((r) => r.idempotencyKey !== undefined));
    let claimed = new Set<string>();
    const existing = new Map<string, IdempotencyRecord>();
    if (keyed.length) {
      claimed = await claimIdempotencyKeys(
        client,
        keyed.map((r) => ({
          key: r.idempotencyKey!,
          messageId: r.message.id,
          fingerprint: r.fingerprint,
          subject: r.subject,
        })),
      );
      const lost = keyed.map((r) => r.idempotencyKey!).filter((k) => !claimed.has(k));
      // A new statement sees rows committed by the concurrent transactions that made ours conflict.
      if (lost.length) for (const rec of await readIdempotencyKeys(client, lost)) existing.set(rec.key, rec);
      // A retry answered from a key writes nothing, and a COMMIT that wrote nothing does not wait for
      // the synchronous standby: rewriting the keys makes it wait, so a duplicate's 202 also means the
      // original is replicated (after a cancelled wait it may be committed only locally).
      if (existing.size) await touchIdempotencyKeys(client, [...existing.keys()]);
    }
    const results: CallResult[] = [];
    const fresh: PublishRequest['message'][] = [];
    const release: string[] = [];
    for (const call of calls) {
      const out: PublishResult[] = [];
      let refused: Error | undefined;
      for (const r of call) {
        const key = r.idempotencyKey;
        if (key === undefined || claimed.has(key)) {
          out.push({ id: r.message.id, duplicate: false });
          continue;
        }
        const rec = existing.get(key);
        if (!rec) {
          // Claimed by a transaction that rolled back after ours waited on it: nothing to answer with.
          refused = new QueueUnavailableError('a concurrent request with this Idempotency-Key failed; retry');
          break;
        }
        if (
          rec.fingerprint !== undefined &&
          r.fingerprint !== undefined &&
          rec.fingerprint !== r.fingerprint
        ) {
          refused = new IdempotencyKeyReusedError(rec.messageId);
          break;
        }
        out.push({ id: rec.messageId, duplicate: true });
      }
      if (refused) {
        results.push(refused);
        for (const r of call)
          if (r.idempotencyKey !== undefined && claimed.has(r.idempotencyKey)) release.push(r.idempotencyKey);
        continue;
      }
      results.push(out);
      for (const [i, r] of call.entries()) if (!out[i]!.duplicate) fresh.push(r.message);
    }
    return { results, fresh, release };
  }
}
