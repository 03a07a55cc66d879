import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool, Queryable } from '../../store/pool.ts';
import {
  type ClaimedRow,
  claimQueued,
  countQueued,
  deleteQueued,
  lockClaimed,
  rescheduleQueued,
} from '../../store/queue-table.ts';
import type { Batch, Outcome, QueueConsumer } from '../queue.ts';

/**
 * The worker side of the embedded default queue. A batch is leased with `FOR UPDATE SKIP LOCKED`
 * (visible_at moves past the lease, attempts counts deliveries, like a visibility timeout); the worker
 * then stores it in one transaction that first locks the batch's rows again: a row that is gone was
 * erased (GDPR) after the lease and its message is not stored. The rows are deleted in that same
 * transaction, so a message is either still queued or stored, never both and never neither. A worker
 * that dies mid-batch leaves the lease to expire and another worker takes the batch again; the insert
 * is idempotent.
 */
export interface PgConsumerOptions {
  /** How long a claimed batch stays invisible to other workers (default 30 s). */
  leaseMs?: number;
  /** Poll interval when the queue is empty (default 25 ms). */
  pollMs?: number;
}

export class PgQueueConsumer implements QueueConsumer {
  private readonly leaseMs: number;
  private readonly pollMs: number;

  constructor(
    private readonly pool: Pool,
    opts: PgConsumerOptions = {},
  ) {
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 25;
  }

  async receive(opts: { max: number; maxWaitMs: number; signal: AbortSignal }): Promise<Batch | null> {
    while (!opts.signal.aborted) {
      const rows = await claimQueued(this.pool, opts.max, this.leaseMs);
      if (rows.length) return this.batch(rows);
      await sleep(this.pollMs, undefined, { signal: opts.signal }).catch(() => {});
    }
    return null;
  }

  private batch(rows: ClaimedRow[]): Batch {
    const deliveries = rows.map((r) => ({ message: r.payload, attempt: r.attempts }));
    const ids = deliveries.map((d) => d.message.id);
    return {
      deliveries,
      stillQueuedInTransaction: async (tx: Queryable) => {
        const live = await lockClaimed(tx, ids);
        return ids.map((id) => live.has(id));
      },
      settleInTransaction: async (tx: Queryable, outcomes: Outcome[]) => {
        const done: string[] = [];
        const retries: Array<{ id: string; delayMs: number; reason: string }> = [];
        outcomes.forEach((o, i) => {
          if (o.kind === 'retry') retries.push({ id: ids[i]!, delayMs: o.delayMs, reason: o.reason });
          else done.push(ids[i]!);
        });
        if (done.length) await deleteQueued(tx, done);
        if (retries.length) await rescheduleQueued(tx, retries);
      },
      acknowledge: async () => {},
      release: async (delayMs: number) => {
        await rescheduleQueued(
          this.pool,
          ids.map((id) => ({ id, delayMs, reason: null })),
        ).catch(() => {}); // database down: the lease expires by itself
      },
    };
  }

  async depth(): Promise<number> {
    return countQueued(this.pool, 2 ** 31 - 1);
  }

  /** Nothing to hand back: leases expire by themselves, and the pool belongs to the caller. */
  async close(): Promise<void> {}
}
