import { setTimeout as sleep } from 'node:timers/promises';
import { parseTraceContext, type TraceContext, traceIdOf } from '../contract/trace-context.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { idOnlyTracing, type TraceSpan, type Tracing } from '../ops/tracing.ts';
import type { Batch, Delivery, Outcome, QueueConsumer } from '../queue/queue.ts';
import { isMissingPartition } from '../store/errors.ts';
import { ensurePartitions } from '../store/partitions.ts';
import { type Pool, withReplicatedTransaction } from '../store/pool.ts';
import { lockErasuresShared } from '../store/subjects.ts';
import { markForReplication } from '../store/sync-marks.ts';
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
   * Batches stored at once, each in its own transaction on its own connection (default 1). A batch's
   * time is mostly waiting (COPY, the INSERT, the commit's WAL flush, each a round trip in turn), so a
   * second batch in flight keeps PostgreSQL and this process busy meanwhile. Draining 100k messages on
   * 2 cores: NATS queue 27–30k rows/s with 1, 36–39k with 2, no better with 3–4; Postgres queue 16k
   * with 1, 19–21k with 2. Two in flight are what two worker processes do anyway (idempotent insert,
   * per-batch settlement), so no ordering is lost that existed.
   */
  concurrency?: number;
  /**
   * Receive the next batch while the stores in flight run (default true). The runtime turns it off for
   * the Postgres queue, where the overlapping claim costs PostgreSQL more than it saves.
   */
  prefetch?: boolean;
  /** Starts each batch's span, linked to its messages' traces (default idOnlyTracing: ids only). */
  tracing?: Tracing;
}

/** At most this many per-message failure lines per batch; the batch's summary line counts them all. */
const MESSAGE_LINES = 20;
/** Message trace ids named on a failed batch's line. */
const BATCH_TRACE_IDS = 10;

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

  /** Stops receiving, lets the batches in hand finish (store, commit, ack), then resolves. Idempotent. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  /**
   * One receive loop feeds up to `concurrency` stores. With prefetch the next batch is received while
   * the slots are busy (a claim on the Postgres queue, a fetch on JetStream, overlapping the stores) and
   * waits for a free slot; without it, a batch is asked for only when a slot is free. Once stopping, a
   * batch already received is still stored; none is asked for.
   */
  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const slots = Math.max(1, this.opts.concurrency ?? 1);
    const prefetch = this.opts.prefetch !== false;
    const inFlight = new Set<Promise<void>>();
    const slotFree = async () => {
      while (inFlight.size >= slots) await Promise.race(inFlight);
    };
    while (!signal.aborted) {
      if (!prefetch) await slotFree();
      if (signal.aborted) break;
      let batch: Batch | null;
      const asked = performance.now();
      try {
        batch = await this.receive(signal);
      } catch (err) {
        await this.failed(err, undefined, signal);
        continue;
      }
      if (!batch) {
        // A queue that answers "nothing" at once (a closed NATS consumer) would otherwise make this loop
        // spin on resolved promises and starve the event loop: no timer, signal or shutdown step would
        // run again. Wait out the rest of the poll interval instead.
        const left = this.opts.maxWaitMs - (performance.now() - asked);
        if (left > 1) await sleep(left, undefined, { signal }).catch(() => {});
        continue;
      }
      await slotFree();
      const stored: Promise<void> = this.store(batch, signal).finally(() => inFlight.delete(stored));
      inFlight.add(stored);
    }
    await Promise.all(inFlight);
  }

  /** Stores one batch; on failure hands it back for later and holds its slot for the backoff. */
  private async store(batch: Batch, signal: AbortSignal): Promise<void> {
    const tracing = this.opts.tracing ?? idOnlyTracing;
    // One batch holds messages of many traces: its span is a new root linked to each (docs/tracing.md).
    // Tracing off, no links are built: ids only, nothing per message.
    const span = tracing.startBatch(tracing.exporting ? links(batch.deliveries) : [], {
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'store',
      'messaging.batch.message_count': batch.deliveries.length,
    });
    try {
      await this.process(batch);
      span.end();
      this.failures = 0;
    } catch (err) {
      // Ended before the backoff: the span is the attempt, not the wait after it.
      span.fail(err);
      span.end();
      await this.failed(err, batch, signal, span);
    }
  }

  private async failed(
    err: unknown,
    batch: Batch | undefined,
    signal: AbortSignal,
    span?: TraceSpan,
  ): Promise<void> {
    this.failures++;
    const delay = Math.min(30_000, 100 * 2 ** Math.min(this.failures, 9));
    this.log.error(
      {
        err,
        retryInMs: delay,
        failures: this.failures,
        // The batch span's trace (linked to every message's), and the first messages' own traces.
        trace_id: span?.context.traceId,
        ...(batch ? { messages: batch.deliveries.length, trace_ids: traceIds(batch.deliveries) } : {}),
      },
      'worker batch failed; retrying',
    );
    this.metrics.workerErrors.inc();
    if (batch) await batch.release(delay).catch(() => {});
    await sleep(delay, undefined, { signal }).catch(() => {});
  }

  private receive(signal: AbortSignal): Promise<Batch | null> {
    return this.queue.receive({ max: this.opts.batchSize, maxWaitMs: this.opts.maxWaitMs, signal });
  }

  private async process(batch: Batch): Promise<void> {
    const started = performance.now();
    // Acknowledged only after a COMMIT the synchronous standby confirmed: a COMMIT whose wait for it was
    // cancelled rejects (CommitNotConfirmedError), and the batch is handed back and stored again later.
    const result = await this.withPartitions(() =>
      withReplicatedTransaction(this.pool, async (tx) => {
        await lockErasuresShared(tx);
        const live = await batch.stillQueuedInTransaction(tx);
        const r = await storeBatch(tx, batch.deliveries, live, {
          maxAttempts: this.opts.maxAttempts,
          backoffMs: (n) => Math.min(60_000, 500 * 2 ** (n - 1)),
        });
        await batch.settleInTransaction(tx, r.outcomes);
        // Nothing written (a redelivered batch already stored): without WAL the COMMIT would not wait
        // for the standby, and the ack would vouch for rows that may be on the primary only.
        if (r.stored + r.deadLettered === 0) await markForReplication(tx);
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
    if (result.replayed) m.deadLettersReplayed.inc(result.replayed);
    const now = Date.now();
    for (const d of batch.deliveries) m.endToEndLag.observe((now - Date.parse(d.message.received_at)) / 1000);
    if (result.retried || result.deadLettered) {
      const reasons = result.outcomes.flatMap((o) => ('reason' in o ? [o.reason] : []));
      this.log.warn(
        { retried: result.retried, deadLettered: result.deadLettered, reasons: reasons.slice(0, 5) },
        'messages failed to store',
      );
      this.logFailures(batch.deliveries, result.outcomes);
    }
    this.log.debug({ size: batch.deliveries.length, stored: result.stored }, 'batch stored');
  }

  /**
   * One line per message that failed on its own (dead-lettered, or to be retried), with its id and
   * trace id, so a sender's trace leads to what became of the message. At most MESSAGE_LINES a batch.
   */
  private logFailures(deliveries: Delivery[], outcomes: Outcome[]): void {
    let lines = 0;
    for (const [i, o] of outcomes.entries()) {
      if (o.kind !== 'dead-lettered' && o.kind !== 'retry') continue;
      if (lines++ === MESSAGE_LINES) break;
      const d = deliveries[i]!;
      const line = {
        id: d.message.id,
        trace_id: traceIdOf(d.message.traceparent) ?? null,
        attempt: d.attempt,
        reason: o.reason,
      };
      if (o.kind === 'dead-lettered') this.log.warn(line, 'message dead-lettered');
      else this.log.warn({ ...line, retryInMs: o.delayMs }, 'message failed to store; will retry');
    }
  }

  /**
   * A missing partition (clock moved past the pre-created range) is created, then the batch retried,
   * where this role may create it (the owner, as with `npm start`); otherwise, or if that fails, the
   * batch fails with the missing partition, is retried with backoff, and `intake maintain` is due.
   */
  private async withPartitions<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isMissingPartition(err)) throw err;
      await ensurePartitions(this.pool).catch(() => {
        throw err;
      });
      return fn();
    }
  }
}

/** The messages' valid trace contexts, for the batch span's links. */
function links(deliveries: Delivery[]): TraceContext[] {
  const out: TraceContext[] = [];
  for (const d of deliveries) {
    const ctx = parseTraceContext(d.message.traceparent, d.message.tracestate);
    if (ctx) out.push(ctx);
  }
  return out;
}

/** The first few distinct trace ids of the messages (a failed batch's log line). */
function traceIds(deliveries: Delivery[]): string[] {
  const ids = new Set<string>();
  for (const d of deliveries) {
    const id = traceIdOf(d.message.traceparent);
    if (id !== undefined) ids.add(id);
    if (ids.size === BATCH_TRACE_IDS) break;
  }
  return [...ids];
}
