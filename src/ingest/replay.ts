import type { Metrics } from '../ops/metrics.ts';
import type { QueueProducer } from '../queue/queue.ts';
import { type DeadLetter, deleteDeadLetters } from '../store/dead-letters.ts';
import { type Pool, withTransaction } from '../store/pool.ts';
import { writeAudit } from '../store/subjects.ts';

/**
 * Replays dead letters: each message goes back on the queue under its ORIGINAL id (and so its original
 * received_at), is stored by the worker like any other, and its dead letter is deleted once the queue
 * accepted it. Replaying twice cannot store twice: the insert skips an id already stored, and a dead
 * letter already replayed is gone. A message that fails again is dead-lettered again, with its reason.
 * Every replay and discard is audited.
 *
 * A replayed message carries `replayed: <n>` (its n-th replay), and the worker counts it
 * (intake_dead_letters_replayed_total) when it is done with it: the CLI replays from a one-shot process
 * that Prometheus never scrapes, so counting here would lose its replays and break loss accounting.
 */
export interface ReplayOptions {
  db: Pool;
  queue: QueueProducer;
  /** Counts discards (replays are counted by the worker). */
  metrics?: Metrics;
  /** INTAKE_PUBLISH_TIMEOUT_MS. */
  publishTimeoutMs: number;
}

/**
 * Puts the dead letters back on the queue; returns the ids replayed (in the order given). The rows are
 * deleted in a transaction that commits only after the queue accepted the messages: a failed publish
 * leaves them where they were, and a message that is dead-lettered again meanwhile waits for the commit
 * and is then written back, so a message is always stored, queued or dead-lettered.
 */
export async function replayDeadLetters(
  opts: ReplayOptions,
  letters: DeadLetter[],
  actor: string,
): Promise<string[]> {
  if (letters.length === 0) return [];
  const ids = await withTransaction(opts.db, async (tx) => {
    const removed = new Set(
      await deleteDeadLetters(
        tx,
        letters.map((d) => d.id),
      ),
    );
    const replay = letters.filter((d) => removed.has(d.id));
    if (replay.length === 0) return [];
    await opts.queue.publish(
      replay.map((d) => ({ message: { ...d.payload, replayed: (d.payload.replayed ?? 0) + 1 } })),
      AbortSignal.timeout(opts.publishTimeoutMs),
    );
    const done = replay.map((d) => d.id);
    await writeAudit(tx, actor, 'replay-dead-letter', null, { ids: done });
    return done;
  });
  return ids;
}

/** Deletes dead letters for good; returns the ids that existed. */
export async function discardDeadLetters(
  opts: ReplayOptions,
  ids: string[],
  actor: string,
): Promise<string[]> {
  const removed = await deleteDeadLetters(opts.db, ids);
  opts.metrics?.deadLettersDiscarded.inc(removed.length);
  if (removed.length) await writeAudit(opts.db, actor, 'discard-dead-letter', null, { ids: removed });
  return removed;
}
