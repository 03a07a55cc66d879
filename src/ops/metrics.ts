import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { droppedLogLines } from './logger.ts';

/**
 * Every metric intake exports (SPEC §7). One registry per process, built here so names and labels are
 * defined in one place. Loss accounting: received = accepted + duplicate + rejected (by reason:
 * invalid, forbidden, queue_unavailable); accepted = stored + dead-lettered + still queued + erased in
 * flight. A batch counts each of its messages.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const r = [registry];
  return {
    registry,
    httpRequests: new Counter({
      name: 'intake_http_requests_total',
      help: 'HTTP requests by route, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers: r,
    }),
    httpDuration: new Histogram({
      name: 'intake_http_request_duration_seconds',
      help: 'HTTP request duration by route and method',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    received: new Counter({
      name: 'intake_messages_received_total',
      help: 'Messages received by the ingest API',
      registers: r,
    }),
    accepted: new Counter({
      name: 'intake_messages_accepted_total',
      help: 'Messages durably queued (answered 202)',
      registers: r,
    }),
    rejected: new Counter({
      name: 'intake_messages_rejected_total',
      help: 'Messages not accepted, by reason',
      labelNames: ['reason'],
      registers: r,
    }),
    duplicates: new Counter({
      name: 'intake_messages_duplicate_total',
      help: 'Idempotent retries answered with the original id',
      registers: r,
    }),
    publishSeconds: new Histogram({
      name: 'intake_queue_publish_duration_seconds',
      help: 'Time from publish to durable acknowledgement by the queue',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: r,
    }),
    stored: new Counter({
      name: 'intake_messages_stored_total',
      help: 'Messages newly written to PostgreSQL',
      registers: r,
    }),
    deadLetters: new Counter({
      name: 'intake_messages_dead_lettered_total',
      help: 'Messages moved to dead_letters after bounded retries',
      registers: r,
    }),
    workerBatchSize: new Histogram({
      name: 'intake_worker_batch_size',
      help: 'Messages per worker batch',
      buckets: [1, 5, 10, 50, 100, 250, 500, 1000, 2500],
      registers: r,
    }),
    insertSeconds: new Histogram({
      name: 'intake_worker_insert_duration_seconds',
      help: 'Time to store and commit one batch',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    }),
    endToEndLag: new Histogram({
      name: 'intake_end_to_end_lag_seconds',
      help: 'Time from acceptance (202) to commit in PostgreSQL',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: r,
    }),
    workerErrors: new Counter({
      name: 'intake_worker_errors_total',
      help: 'Worker batches that failed and were retried',
      registers: r,
    }),
    queueDepth: new Gauge({
      name: 'intake_queue_depth',
      help: 'Messages waiting in the queue (sampled)',
      registers: r,
    }),
    ready: new Gauge({ name: 'intake_ready', help: '1 when this process reports ready', registers: r }),
    logLinesDropped: logLinesDroppedCounter(r),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Counts what the logger dropped (it counts for the whole process, before any registry exists). */
function logLinesDroppedCounter(registers: Registry[]): Counter {
  let seen = 0;
  return new Counter({
    name: 'intake_log_lines_dropped_total',
    help: 'Log lines dropped because stdout did not take them in time (reader slow, stopped or gone)',
    registers,
    collect() {
      const now = droppedLogLines();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}
