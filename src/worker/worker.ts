import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Batch, QueueConsumer } from '../queue/queue.ts';
import { isMissingPartition } from '../store/errors.ts';
import { ensurePartitions } from '../store/partitions.ts';
import { type Pool, withTransaction } from '../store/pool.ts';
import { lockErasuresShared } from '../store/subjects.ts';
import { storeBatch } from './store-batch.ts';

/**
 * The DB writer: receive a batch from the queue, store it in one transaction (the queue settles inside
 * it when it lives in the same database), commit, then acknowledge. The same code runs on the Postgres
 * queue and on JetStream. While PostgreSQL is down it backs off and retries; nothing is acknowledged that
 * was not committed, so nothing is lost and the worker catches up when the database returns.
 */
export interface WorkerOptions {
  batchSize: number;
  maxWaitMs: number;
  maxAttempts: number;
  /**
   * Receive the next batch while storing the current one (default true). The runtime turns it off for
   * the Postgres queue, where the overlapping claim costs PostgreSQL more than it saves.
   */
  prefetch?: boolean;
}

export class Worker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private failures = 0;
  /** Batches stored since start (tests and `smoke` wait on progress). */
  batches = 0;

  constructor(
    private readonly queue: QueueConsumer,
    private readonly pool: Pool,
    private readonly opts: WorkerOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops receiving, lets the batch in hand finish (store, commit, ack), then resolves. Idempotent. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    // The next batch is received while this one is stored: the queue read (a claim on the Postgres
    // queue, a fetch on JetStream) overlaps the transaction instead of waiting for it. Once stopping,
    // a batch already received is still stored; none is asked for.
    let next: Promise<Batch | null> | undefined;
    while (!signal.aborted || next) {
      let batch: Batch | null = null;
      try {
        batch = await (next ?? this.receive(signal));
        next = undefined;
        if (!batch) continue;
        if (!signal.aborted && this.opts.prefetch !== false) {
          next = this.receive(signal);
          next.catch(() => {}); // awaited (and its error handled) on the next turn
        }
        await this.process(batch);
        this.failures = 0;
      } catch (err) {
        this.failures++;
        const delay = Math.min(30_000, 100 * 2 ** Math.min(this.failures, 9));
        this.log.error({ err, retryInMs: delay, failures: this.failures }, 'worker batch failed; retrying');
        this.metrics.workerErrors.inc();
        if (batch) await batch.release(delay).catch(() => {});
        await sleep(delay, undefined, { signal }).catch(() => {});
      }
    }
  }

  private receive(signal: AbortSignal): Promise<Batch | null> {
    return this.queue.receive({ max: this.opts.batchSize, maxWaitMs: this.opts.maxWaitMs, signal });
  }

  private async process(batch: Batch): Promise<void> {
    const started = performance.now();
    const result = await this.withPartitions(() =>
      withTransaction(this.pool, async (tx) => {
        await lockErasuresShared(tx);
        const live = await batch.stillQueuedInTransaction(tx);
        const r = await storeBatch(tx, batch.deliveries, live, {
          maxAttempts: this.opts.maxAttempts,
          backoffMs: (n) => Math.min(60_000, 500 * 2 ** (n - 1)),
        });
        await batch.settleInTransaction(tx, r.outcomes);
        return r;
      }),
    );
    await batch.acknowledge(result.outcomes);
    this.batches++;
    const m = this.metrics;
    m.workerBatchSize.observe(batch.deliveries.length);
    m.insertSeconds.observe((performance.now() - started) / 1000);
    m.stored.inc(result.stored);
    if (result.erased) m.erasedInFlight.inc(result.erased);
    if (result.deadLettered) m.deadLetters.inc(result.deadLettered);
    const now = Date.now();
    for (const d of batch.deliveries) m.endToEndLag.observe((now - Date.parse(d.message.received_at)) / 1000);
    if (result.retried || result.deadLettered) {
      const reasons = result.outcomes.flatMap((o) => ('reason' in o ? [o.reason] : []));
      this.log.warn(
        { retried: result.retried, deadLettered: result.deadLettered, reasons: reasons.slice(0, 5) },
        'messages failed to store',
      );
    }
    this.log.debug({ size: batch.deliveries.length, stored: result.stored }, 'batch stored');
  }

  /** A missing partition (clock moved past the pre-created range) is created, then the batch retried. */
  private async withPartitions<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isMissingPartition(err)) throw err;
      await ensurePartitions(this.pool);
      return fn();
    }
  }
}
