import type pg from 'pg';
import type { QueuedMessage } from '../contract/queued-message.ts';
import type { Delivery, Outcome } from '../queue/queue.ts';
import { insertDeadLetters } from '../store/dead-letters.ts';
import { isMissingPartition, isTransient } from '../store/errors.ts';
import { copyMessages } from '../store/messages.ts';
import { withSavepoint } from '../store/transactions.ts';

/**
 * Stores a batch inside the caller's transaction and decides each message's outcome. The whole batch
 * goes in at once (COPY into a staging table, one INSERT from it); if that fails, the batch is bisected
 * under savepoints until the messages that fail on their own are isolated, so one bad message never
 * holds back the rest. An isolated failure is retried with backoff and, after `maxAttempts`
 * deliveries, written to intake.dead_letters.
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
  /**
   * Erased before they could be stored: no longer queued when the batch came to be stored, or received
   * before their subject's erasure (tombstone). Neither stored nor dead-lettered.
   */
  erased: number;
  /**
   * Replayed dead letters (QueuedMessage.replayed) among the stored, erased and dead-lettered ones:
   * counted in intake_dead_letters_replayed_total.
   */
  replayed: number;
}

/**
 * `live[i]` says whether delivery i is still on the queue (Batch.stillQueuedInTransaction); the caller
 * holds the erasure lock shared for the whole transaction.
 */
export async function storeBatch(
  tx: pg.ClientBase,
  deliveries: Delivery[],
  live: boolean[],
  opts: StoreBatchOptions,
): Promise<StoreBatchResult> {
  const outcomes: Outcome[] = new Array(deliveries.length);
  let stored = 0;
  const failed: Array<{ index: number; reason: string }> = [];
  let erased = 0;
  let replayed = 0;

  const attempt = async (indexes: number[], depth: number): Promise<void> => {
    try {
      const r = await withSavepoint(tx, `sp_${depth}`, () =>
        copyMessages(
          tx,
          indexes.map((i) => deliveries[i]!.message),
        ),
      );
      stored += r.inserted;
      erased += r.erased;
      replayed += r.replayed;
      for (const i of indexes) outcomes[i] = { kind: 'stored' };
    } catch (err) {
      // Rolled back to the savepoint: the transaction goes on without these messages.
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
  const toStore: number[] = [];
  for (const i of deliveries.keys()) {
    if (live[i]) toStore.push(i);
    else {
      outcomes[i] = { kind: 'erased' };
      erased++;
      if (deliveries[i]!.message.replayed !== undefined) replayed++;
    }
  }
  if (toStore.length) await attempt(toStore, 0);

  let deadLettered = 0;
  let retried = 0;
  const dead: Array<{ m: QueuedMessage; reason: string; attempts: number }> = [];
  for (const { index, reason } of failed) {
    const d = deliveries[index]!;
    if (d.attempt >= opts.maxAttempts) {
      dead.push({ m: d.message, reason, attempts: d.attempt });
      outcomes[index] = { kind: 'dead-lettered', reason };
      deadLettered++;
      if (d.message.replayed !== undefined) replayed++;
    } else {
      outcomes[index] = { kind: 'retry', delayMs: opts.backoffMs(d.attempt), reason };
      retried++;
    }
  }
  await insertDeadLetters(
    tx,
    dead.map((d) => ({ message: d.m, reason: d.reason, attempts: d.attempts })),
  );
  return { outcomes, stored, deadLettered, retried, erased, replayed };
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return `${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`.slice(0, 1000);
}
