import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from './default-metrics.ts';
import { droppedLogLines } from './logger.ts';

/**
 * Why messages were not accepted: the values of intake_messages_rejected_total's `reason` label. A fixed
 * list, so the label's cardinality is bounded; every problem code maps to one of them (its row in
 * http/error-registry.ts), and docs/alerting.md explains each.
 */
export const REJECT_REASONS = [
  'invalid',
  'invalid_json',
  'invalid_request',
  'too_large',
  'unsupported_media_type',
  'unauthenticated',
  'forbidden',
  'rate_limited',
  'in_flight',
  'queue_full',
  'queue_unavailable',
  'outcome_unknown',
  'error',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

/**
 * Every metric intake exports (docs/alerting.md). One registry per process, built here so names and labels are
 * defined in one place. Loss accounting (docs/alerting.md, "Loss accounting"), a batch counting each of its
 * messages and a request refused before its body was read counting as one:
 *
 *     received = accepted + duplicate + rejected (summed over reasons)        (API processes)
 *     accepted + replayed = stored + dead-lettered + erased in flight + still queued
 *
 * where `replayed` (intake_dead_letters_replayed_total) is counted by the worker, for replays by the API
 * and by the CLI alike (ingest/replay.ts marks the messages it puts back on the queue).
 */
export function createMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry, { eventLoopMonitoringPrecision: 20 });
  const r = [registry];
  const rejected = new Counter({
    name: 'intake_messages_rejected_total',
    help: 'Messages of ingest requests refused, by reason (a request refused unread counts as one)',
    labelNames: ['reason'],
    registers: r,
  });
  // Every reason exported from the start, at 0: a rate() over a series that appears with its first
  // refusal misses that refusal, and the alert would not see the first minutes of a flood.
  for (const reason of REJECT_REASONS) rejected.inc({ reason }, 0);
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
    httpConnectionsOpen: new Gauge({
      name: 'intake_http_connections_open',
      help: 'HTTP connections this process holds open',
      registers: r,
    }),
    httpConnectionsLimit: new Gauge({
      name: 'intake_http_connections_limit',
      help: 'Most HTTP connections this process holds open (INTAKE_MAX_CONNECTIONS)',
      registers: r,
    }),
    httpConnectionsRefused: new Counter({
      name: 'intake_http_connections_refused_total',
      help: 'Connections answered 503 SERVER_BUSY and closed because INTAKE_MAX_CONNECTIONS were open',
      registers: r,
    }),
    received: new Counter({
      name: 'intake_messages_received_total',
      help: 'Messages of every ingest request, accepted or not (a request refused unread counts as one)',
      registers: r,
    }),
    accepted: new Counter({
      name: 'intake_messages_accepted_total',
      help: 'Messages durably queued (answered 202)',
      registers: r,
    }),
    rejected,
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
    erasedInFlight: new Counter({
      name: 'intake_messages_erased_in_flight_total',
      help: 'Accepted messages not stored because their subject was erased (GDPR) while they were queued',
      registers: r,
    }),
    // Labelled `task`, not `job`: Prometheus keeps `job` for the scrape target and would rename ours.
    maintenanceFailures: new Counter({
      name: 'intake_maintenance_failures_total',
      help: 'Failed runs of periodic maintenance tasks, by task',
      labelNames: ['task'],
      registers: r,
    }),
    // Counted by the worker, not by whoever replays: the CLI is a one-shot process Prometheus never
    // scrapes. A replay counts once the worker is done with it (stored, dead-lettered again, or dropped
    // for an erasure), in the same transaction-backed way as those outcomes are counted.
    deadLettersReplayed: new Counter({
      name: 'intake_dead_letters_replayed_total',
      help: 'Replayed dead letters (API or CLI) a worker is done with: stored, dead-lettered again or erased',
      registers: r,
    }),
    deadLettersDiscarded: new Counter({
      name: 'intake_dead_letters_discarded_total',
      help: 'Dead letters deleted for good through the admin API (CLI discards are in intake.audit_log only)',
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
    // Set by the worker from the catalog, whoever keeps the partitions (intake maintain, or itself).
    partitionsAheadDays: new Gauge({
      name: 'intake_partitions_ahead',
      help: 'Days after today with a daily messages partition each, without a gap (-1: none for today)',
      registers: r,
    }),
    ready: new Gauge({ name: 'intake_ready', help: '1 when this process reports ready', registers: r }),
    // NATS stream usage, exported by API and worker processes alike (queue/nats/stream-monitor.ts), so
    // a backlog stays visible with every worker down. Labelled by stream; absent on the Postgres queue.
    streamBytes: new Gauge({
      name: 'intake_queue_stream_bytes',
      help: 'Bytes held by the NATS message stream (acknowledged messages until trimmed, and the backlog)',
      labelNames: ['stream'],
      registers: r,
    }),
    streamLimitBytes: new Gauge({
      name: 'intake_queue_stream_limit_bytes',
      help: 'max_bytes of the NATS message stream (NATS_MAX_BYTES); 0 when it has no limit of its own',
      labelNames: ['stream'],
      registers: r,
    }),
    streamMessages: new Gauge({
      name: 'intake_queue_stream_messages',
      help: 'Stream messages (envelopes) held by the NATS message stream',
      labelNames: ['stream'],
      registers: r,
    }),
    streamLimitMessages: new Gauge({
      name: 'intake_queue_stream_limit_messages',
      help: 'max_msgs of the NATS message stream (NATS_MAX_MSGS); 0 when it has no limit of its own',
      labelNames: ['stream'],
      registers: r,
    }),
    // The Idempotency-Key bucket (KV_<stream>-idempotency), read by the same monitor at the same cadence:
    // at its limit (NATS_IDEMPOTENCY_MAX_BYTES, discard new) a request with a new key gets 503 QUEUE_FULL.
    idempotencyBucketBytes: new Gauge({
      name: 'intake_queue_idempotency_bucket_bytes',
      help: 'Bytes held by the NATS Idempotency-Key bucket (its KV stream), claims and subject index entries',
      labelNames: ['bucket'],
      registers: r,
    }),
    idempotencyBucketLimitBytes: new Gauge({
      name: 'intake_queue_idempotency_bucket_limit_bytes',
      help: 'max_bytes of the NATS Idempotency-Key bucket (NATS_IDEMPOTENCY_MAX_BYTES); 0 when it has no limit',
      labelNames: ['bucket'],
      registers: r,
    }),
    storeWritable: new Gauge({
      name: 'intake_queue_store_writable',
      help: '1 when the last readiness probe write to the JetStream store succeeded, else 0',
      labelNames: ['stream'],
      registers: r,
    }),
    streamTrimmed: new Counter({
      name: 'intake_queue_stream_trimmed_messages_total',
      help: 'Acknowledged stream messages deleted by workers to make room (NATS_TRIM_AT_PERCENT)',
      labelNames: ['stream'],
      registers: r,
    }),
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
