import { ERASURE_LOCK } from '../privacy/subjects.ts';
import type { Delivery, Outcome, QueuedMessage } from '../queue/queue.ts';
import { insertMessages } from '../store/messages.ts';
import { isMissingPartition } from '../store/partitions.ts';
import type { Queryable } from '../store/pool.ts';

/**
 * Stores a batch inside the caller's transaction and decides each message's outcome. The whole batch
 * goes in one statement; if that fails, the batch is bisected under savepoints until the messages that
 * fail on their own are isolated, so one bad message never holds back the rest. An isolated failure is
 * retried with backoff and, after `maxAttempts` deliveries, written to intake.dead_letters.
 */
export interface StoreBatchOptions {
  maxAttempts: number;
  /** Backoff before the n-th retry (n ≥ 1). */
  backoffMs: (attempt: number) => number;
}

export interface StoreBatchResult {
  outcomes: Outcome[];
  stored: number;
  deadLettered: number;
  retried: number;
}

/** Errors that say the database or connection is unwell, not this message: retry the whole batch. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  // 08 connection, 40 rollback (serialization/deadlock), 53 resources, 57 operator intervention
  // (shutdown), 58 system error; no code at all means the socket failed.
  return code === '' || /^(08|40|53|57|58)/.test(code) || code === '55P03';
}

export async function storeBatch(
  tx: Queryable,
  deliveries: Delivery[],
  opts: StoreBatchOptions,
): Promise<StoreBatchResult> {
  const outcomes: Outcome[] = new Array(deliveries.length);
  let stored = 0;
  const failed: Array<{ index: number; reason: string }> = [];

  const attempt = async (indexes: number[], depth: number): Promise<void> => {
    const sp = `sp_${depth}`;
    await tx.query(`SAVEPOINT ${sp}`);
    try {
      stored += await insertMessages(
        tx,
        indexes.map((i) => deliveries[i]!.message),
      );
      await tx.query(`RELEASE SAVEPOINT ${sp}`);
      for (const i of indexes) outcomes[i] = { kind: 'stored' };
    } catch (err) {
      await tx.query(`ROLLBACK TO SAVEPOINT ${sp}`);
      // Not this message's fault: the caller fixes the cause (or waits) and retries the whole batch.
      if (isTransient(err) || isMissingPartition(err)) throw err;
      if (indexes.length === 1) {
        failed.push({ index: indexes[0]!, reason: describe(err) });
        return;
      }
      const mid = indexes.length >> 1;
      await attempt(indexes.slice(0, mid), depth + 1);
      await attempt(indexes.slice(mid), depth + 1);
    }
  };
  // Shared with other batches, exclusive for an erasure: an erasure waits for this batch to commit
  // (and then deletes its rows), and a batch that starts after an erasure sees its tombstone.
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [ERASURE_LOCK]);
  await attempt([...deliveries.keys()], 0);

  let deadLettered = 0;
  let retried = 0;
  const dead: Array<{ m: QueuedMessage; reason: string; attempts: number }> = [];
  for (const { index, reason } of failed) {
    const d = deliveries[index]!;
    if (d.attempt >= opts.maxAttempts) {
      dead.push({ m: d.message, reason, attempts: d.attempt });
      outcomes[index] = { kind: 'dead-lettered', reason };
      deadLettered++;
    } else {
      outcomes[index] = { kind: 'retry', delayMs: opts.backoffMs(d.attempt), reason };
      retried++;
    }
  }
  if (dead.length) {
    await tx.query(
      `INSERT INTO intake.dead_letters (id, payload, reason, attempts)
       SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::int[]) ON CONFLICT (id) DO NOTHING`,
      [
        dead.map((d) => d.m.id),
        dead.map((d) => JSON.stringify(d.m)),
        dead.map((d) => d.reason),
        dead.map((d) => d.attempts),
      ],
    );
  }
  return { outcomes, stored, deadLettered, retried };
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return `${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`.slice(0, 1000);
}
