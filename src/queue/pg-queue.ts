import { setTimeout as sleep } from 'node:timers/promises';
import { type Pool, type PoolClient, type Queryable, withClient } from '../store/pool.ts';
import { GroupCommit } from './group-commit.ts';
import {
  type Batch,
  type Outcome,
  type PublishRequest,
  type PublishResult,
  type QueueConsumer,
  type QueuedMessage,
  type QueueProducer,
  QueueUnavailableError,
} from './queue.ts';

/**
 * The embedded default queue: a table in the same PostgreSQL as the messages (SPEC §3).
 *
 * Producing: concurrent publishes are grouped (GroupCommit) into one INSERT, so `202` means committed
 * without paying one fsync per request. Consuming: a batch is leased with `FOR UPDATE SKIP LOCKED`
 * (visible_at moves past the lease, attempts counts deliveries, like a visibility timeout), and the
 * worker deletes the rows in the same transaction that stores them. A worker that dies mid-batch leaves
 * the lease to expire and another worker takes the batch again; the insert is idempotent.
 */
export interface PgQueueOptions {
  lingerMs: number;
  maxBatch: number;
  maxPending: number;
  /** How long a claimed batch stays invisible to other workers (default 30 s). */
  leaseMs?: number;
  /** Poll interval when the queue is empty (default 25 ms). */
  pollMs?: number;
}

export class PgQueue implements QueueProducer, QueueConsumer {
  private readonly batcher: GroupCommit<PublishRequest, PublishResult>;
  private ready = true;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly healthTimer: NodeJS.Timeout;

  constructor(
    private readonly pool: Pool,
    opts: PgQueueOptions,
  ) {
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 25;
    this.batcher = new GroupCommit({
      lingerMs: opts.lingerMs,
      maxBatch: opts.maxBatch,
      maxPending: opts.maxPending,
      concurrency: 4,
      flush: (reqs) => this.insert(reqs),
    });
    // Readiness must recover by itself: while not ready no traffic arrives to prove the database is back.
    this.healthTimer = setInterval(() => {
      if (!this.ready) {
        this.pool.query('SELECT 1').then(
          () => {
            this.ready = true;
          },
          () => {},
        );
      }
    }, 1000);
    this.healthTimer.unref();
  }

  publish(requests: PublishRequest[]): Promise<PublishResult[]> {
    return Promise.all(requests.map((r) => this.batcher.submit(r)));
  }

  isReady(): boolean {
    return this.ready;
  }

  async queuedForSubject(pseudonym: string): Promise<number> {
    const r = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM intake.queue WHERE payload->'ip'->>'pseudonym' = $1`,
      [pseudonym],
    );
    return r.rows[0]!.n;
  }

  /** One transaction for the whole group: idempotency keys first, then the new messages. */
  private async insert(reqs: PublishRequest[]): Promise<PublishResult[]> {
    // Two requests in the same group with the same key: the first one wins, the others are duplicates.
    const firstByKey = new Map<string, number>();
    reqs.forEach((r, i) => {
      if (r.idempotencyKey !== undefined && !firstByKey.has(r.idempotencyKey))
        firstByKey.set(r.idempotencyKey, i);
    });
    try {
      return await withClient(this.pool, (client) => this.insertWith(client, reqs, firstByKey));
    } catch (err) {
      this.ready = false;
      if (err instanceof QueueUnavailableError) throw err;
      throw new QueueUnavailableError('PostgreSQL queue did not commit the messages', { cause: err });
    }
  }

  private async insertWith(
    client: PoolClient,
    reqs: PublishRequest[],
    firstByKey: Map<string, number>,
  ): Promise<PublishResult[]> {
    try {
      const results: PublishResult[] = reqs.map((r) => ({ id: r.message.id, duplicate: false }));
      const fresh: number[] = [];
      if (firstByKey.size === 0) {
        fresh.push(...reqs.keys());
      } else {
        await client.query('BEGIN');
        const keys = [...firstByKey.keys()];
        const ids = keys.map((k) => reqs[firstByKey.get(k)!]!.message.id);
        const inserted = await client.query<{ key: string }>(
          `INSERT INTO intake.idempotency_keys (key, message_id)
         SELECT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT (key) DO NOTHING RETURNING key`,
          [keys, ids],
        );
        const won = new Set(inserted.rows.map((r) => r.key));
        const lost = keys.filter((k) => !won.has(k));
        const existing = new Map<string, string>();
        if (lost.length) {
          // A new statement sees rows committed by concurrent transactions that made ours conflict.
          const r = await client.query<{ key: string; message_id: string }>(
            'SELECT key, message_id FROM intake.idempotency_keys WHERE key = ANY($1::text[])',
            [lost],
          );
          for (const row of r.rows) existing.set(row.key, row.message_id);
        }
        for (const [i, r] of reqs.entries()) {
          const key = r.idempotencyKey;
          if (key === undefined || (firstByKey.get(key) === i && won.has(key))) {
            fresh.push(i);
          } else {
            const original = existing.get(key) ?? reqs[firstByKey.get(key)!]!.message.id;
            results[i] = { id: original, duplicate: true };
          }
        }
      }
      if (fresh.length) {
        await client.query(
          'INSERT INTO intake.queue (id, payload) SELECT * FROM unnest($1::uuid[], $2::jsonb[]) ON CONFLICT (id) DO NOTHING',
          [fresh.map((i) => reqs[i]!.message.id), fresh.map((i) => JSON.stringify(reqs[i]!.message))],
        );
      }
      if (firstByKey.size > 0) await client.query('COMMIT');
      this.ready = true;
      return results;
    } catch (err) {
      if (firstByKey.size > 0) await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async receive(opts: { max: number; maxWaitMs: number; signal: AbortSignal }): Promise<Batch | null> {
    while (!opts.signal.aborted) {
      const rows = await this.claim(opts.max);
      if (rows.length) return this.batch(rows);
      await sleep(this.pollMs, undefined, { signal: opts.signal }).catch(() => {});
    }
    return null;
  }

  private async claim(max: number): Promise<Array<{ payload: QueuedMessage; attempts: number }>> {
    const r = await this.pool.query<{ payload: QueuedMessage; attempts: number }>(
      `UPDATE intake.queue q SET attempts = q.attempts + 1, visible_at = now() + $2 * interval '1 millisecond'
       FROM (SELECT id FROM intake.queue WHERE visible_at <= now() ORDER BY visible_at, id
             LIMIT $1 FOR UPDATE SKIP LOCKED) c
       WHERE q.id = c.id
       RETURNING q.payload, q.attempts`,
      [max, this.leaseMs],
    );
    return r.rows;
  }

  private batch(rows: Array<{ payload: QueuedMessage; attempts: number }>): Batch {
    const deliveries = rows.map((r) => ({ message: r.payload, attempt: r.attempts }));
    const ids = deliveries.map((d) => d.message.id);
    return {
      deliveries,
      settleInTransaction: async (tx: Queryable, outcomes: Outcome[]) => {
        const done: string[] = [];
        const retryIds: string[] = [];
        const retryDelays: number[] = [];
        const retryReasons: string[] = [];
        outcomes.forEach((o, i) => {
          if (o.kind === 'retry') {
            retryIds.push(ids[i]!);
            retryDelays.push(o.delayMs);
            retryReasons.push(o.reason);
          } else done.push(ids[i]!);
        });
        if (done.length) await tx.query('DELETE FROM intake.queue WHERE id = ANY($1::uuid[])', [done]);
        if (retryIds.length) {
          await tx.query(
            `UPDATE intake.queue q SET visible_at = now() + r.delay * interval '1 millisecond', last_error = r.reason
             FROM unnest($1::uuid[], $2::int[], $3::text[]) AS r(id, delay, reason) WHERE q.id = r.id`,
            [retryIds, retryDelays, retryReasons],
          );
        }
      },
      acknowledge: async () => {},
      release: async (delayMs: number) => {
        await this.pool
          .query(
            `UPDATE intake.queue SET visible_at = now() + $2 * interval '1 millisecond' WHERE id = ANY($1::uuid[])`,
            [ids, delayMs],
          )
          .catch(() => {}); // database down: the lease expires by itself
      },
    };
  }

  async depth(): Promise<number> {
    const r = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM intake.queue');
    return r.rows[0]!.n;
  }

  /** Waits for publishes already accepted to commit; the pool is closed by its owner. */
  async close(): Promise<void> {
    clearInterval(this.healthTimer);
    await this.batcher.idle();
  }
}

/** Forgets Idempotency-Keys older than the window (the Postgres queue's table; JetStream's KV expires itself). */
export async function pruneIdempotencyKeys(pool: Pool, ttlHours: number): Promise<number> {
  const r = await pool.query(
    `DELETE FROM intake.idempotency_keys WHERE created_at < now() - $1 * interval '1 hour'`,
    [ttlHours],
  );
  return r.rowCount ?? 0;
}
