import type { QueuedMessage } from '../contract/queued-message.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Queryable } from '../store/pool.ts';

export interface PublishRequest {
  message: QueuedMessage;
  /** Idempotency key already scoped to the client (`client\nkey`), if the request had one. */
  idempotencyKey?: string;
  /**
   * Keyed digest of the request body the key came with, in its protected form (only with
   * `idempotencyKey`): the same key with a different fingerprint is refused with IdempotencyKeyReusedError.
   */
  fingerprint?: string;
  /**
   * The IP pseudonym (base64) of the message, stored with the key's record (only with `idempotencyKey`)
   * so that the subject's erasure finds and deletes it.
   */
  subject?: string;
  /**
   * The message made again under another id, its ciphertexts bound to that id: a retry whose key names
   * an earlier message is published under that message's id (NATS queue, a taken-over claim).
   */
  rebind?: (id: string) => QueuedMessage;
}

export interface PublishResult {
  /** The id the message is known by: the new one, or the original's for an idempotent retry. */
  id: string;
  duplicate: boolean;
}

/** The API side of a queue. */
export interface QueueProducer {
  /**
   * Resolves, with one result per request in order, only once the queue holds every message durably
   * (committed / acknowledged by the replicas). Otherwise rejects, and the error must be TRUE
   * (queue/errors.ts): QueueUnavailableError (or a subclass) only when no message of the call can
   * ever be stored from this attempt; PublishOutcomeUnknownError when that cannot be known.
   *
   * `signal` aborts at the caller's deadline. Requests not yet handed to the queue are then dropped
   * (QueueUnavailableError); requests in flight are cancelled where the queue can do so for certain
   * (a transaction rolled back), else the call rejects with PublishOutcomeUnknownError.
   */
  publish(requests: PublishRequest[], signal?: AbortSignal): Promise<PublishResult[]>;
  /** False while the queue is known to be unreachable (drives `/readyz`). */
  isReady(): boolean;
  /**
   * How many messages of one data subject (by IP pseudonym, base64) are still queued, not yet stored:
   * GDPR export reports them and erasure's tombstone drops them when the worker meets them.
   */
  queuedForSubject(pseudonym: string): Promise<number>;
  /**
   * Called inside a GDPR erasure's transaction, after its tombstone is written: removes what the queue
   * can of the subject's queued messages and returns how many of them were queued. Those it cannot
   * remove are dropped by the tombstone when the worker meets them.
   */
  forgetSubject(tx: Queryable, pseudonym: string): Promise<number>;
  /**
   * Called inside a GDPR erasure's transaction: deletes the Idempotency-Key records of the subject's
   * requests (they carry its pseudonym and a fingerprint of its messages); returns how many.
   */
  forgetIdempotencyKeys(tx: Queryable, pseudonym: string): Promise<number>;
  /** Messages waiting or in flight, when the queue can tell cheaply (metrics, with or without workers). */
  depth(): Promise<number | undefined>;
  /** Waits for the publishes already accepted to settle (OpenedQueue.close calls it). */
  close(): Promise<void>;
}

export interface Delivery {
  message: QueuedMessage;
  /** 1 on the first delivery, counting redeliveries after failures and crashes. */
  attempt: number;
}

/** What became of one delivery; the queue settles it accordingly. */
export type Outcome =
  | { kind: 'stored' }
  /** No longer on the queue when the worker came to store it (a GDPR erasure took it): not stored. */
  | { kind: 'erased' }
  | { kind: 'dead-lettered'; reason: string }
  | { kind: 'retry'; delayMs: number; reason: string };

/** A batch claimed from the queue. Exactly one of settle+acknowledge or release is called. */
export interface Batch {
  deliveries: Delivery[];
  /**
   * The first statement inside the transaction that stores the batch (after the erasure lock): which
   * deliveries are still on the queue. A queue in the same database locks its rows here and reports
   * those an erasure deleted since they were claimed; a remote queue reports all.
   */
  stillQueuedInTransaction(tx: Queryable): Promise<boolean[]>;
  /**
   * Runs inside the transaction that stores the batch, before it commits: a queue that lives in the
   * same database (the Postgres queue) removes or reschedules its rows here, atomically with the insert.
   */
  settleInTransaction(tx: Queryable, outcomes: Outcome[]): Promise<void>;
  /** Runs after that transaction committed: a remote queue (JetStream) acks, naks or terminates here. */
  acknowledge(outcomes: Outcome[]): Promise<void>;
  /** Nothing was stored (database down): make every message deliverable again after delayMs. */
  release(delayMs: number): Promise<void>;
}

/** The worker side of a queue. */
export interface QueueConsumer {
  /** Waits for messages; resolves with up to `max` of them, or null when `signal` aborts. */
  receive(opts: { max: number; maxWaitMs: number; signal: AbortSignal }): Promise<Batch | null>;
  /** Messages waiting or in flight, when the queue can tell cheaply (metrics, loss accounting). */
  depth(): Promise<number | undefined>;
  /** Hands back what was pulled and not processed (OpenedQueue.close calls it after the worker stopped). */
  close(): Promise<void>;
}

/** What a process does with the queue: publish (`api`) and/or consume (`worker`). */
export type QueueRole = 'api' | 'worker';

/**
 * What a process brings to the queue it opens, the same for every adapter (each folder's `open…Queue`
 * takes its own settings and this).
 */
export interface QueueProcess {
  log: Logger;
  /** Where queue usage, depth and readiness go (absent: not exported). */
  metrics?: Metrics;
  /**
   * The process's roles (default both). The consumer is built only for `worker`. On NATS, with `api`
   * readiness means "a publish can succeed now" (a worker-only process stays ready while the stream is
   * full, so its rollouts are not blocked then), and with `worker` the process trims acknowledged
   * messages (nats/stream-monitor.ts).
   */
  roles?: QueueRole[];
}

/**
 * What the queue is and holds, read without changing anything: what `intake doctor` reports of it
 * (OpenedQueue.inspect in a running process; open-queue.ts inspectQueue for a one-shot look).
 */
export interface QueueInspection {
  kind: 'nats' | 'postgres';
  /**
   * Whether the queue's server answered. `tlsVerified`: the client insisted on TLS and verified the
   * server's certificate against the configured CA (NATS_TLS_CA_FILE). On the Postgres queue the server
   * is the database.
   */
  server:
    | { reachable: true; address: string; tlsVerified: boolean }
    | { reachable: false; address: string; error: string };
  /** Where the messages are kept (the stream, the table); undefined when it does not exist (yet). */
  store: QueueStoreInspection | undefined;
  /**
   * The worker's durable consumer, where the queue has one apart from the store (NATS): how many
   * stream messages wait for it and how many it holds unacknowledged; or absent, or (`error`) unreadable.
   */
  consumer:
    | { name: string; exists: true; waiting: number; unacknowledged: number }
    | { name: string; exists: false; error: string | undefined }
    | undefined;
}

/** The queue's store as inspected: its size, its own limits, and how it differs from the configuration. */
export interface QueueStoreInspection {
  /** The stream's or the table's name. */
  name: string;
  /** Settings that differ from what the configuration asks for (NATS fixes them at start where safe). */
  drift: Array<{ setting: string; want: string; have: string }>;
  /** What it holds: stream messages (envelopes) on NATS, queued messages in the Postgres table. */
  messages: number;
  /** Bytes held, where the store counts them (NATS). */
  bytes: number | undefined;
  /** Its own limits, in the same units (0: none): a store at its limit refuses publishes (QUEUE_FULL). */
  maxMessages: number;
  maxBytes: number;
  /** How much of its limits is used, 0 to 1 (the larger of messages and bytes); 0 without limits. */
  usage: number;
  /** Room for one more message under its own limits. */
  hasRoom: boolean;
  /** Workers trim acknowledged messages from this usage, in percent (NATS). */
  trimAtPercent: number | undefined;
  /** Replication, when more than one replica is configured (NATS): peers and those lagging or offline. */
  replicas: { configured: number; peers: number; lagging: string[] } | undefined;
}

/**
 * The queue as a process opened it for its roles (open-queue.ts): the producer always (publishing,
 * readiness, GDPR counts), the consumer only for the worker role, and one close() that stops both in
 * order and lets go of their connections.
 */
export interface OpenedQueue {
  producer: QueueProducer;
  /** Present for the worker role. */
  consumer: QueueConsumer | undefined;
  /** Reads the queue's settings and state over the queue's own connections; changes nothing. */
  inspect(): Promise<QueueInspection>;
  /**
   * Waits for publishes in flight, hands back what the consumer pulled and did not process, then closes
   * the connections. Call after the HTTP server and the worker stopped. Idempotent.
   */
  close(): Promise<void>;
}

export {
  IdempotencyKeyInFlightError,
  IdempotencyKeyReusedError,
  MessageTooLargeError,
  PublishOutcomeUnknownError,
  QueueFullError,
  QueueOverloadedError,
  QueueUnavailableError,
} from './errors.ts';
