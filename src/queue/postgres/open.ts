import { createPool, type Pool } from '../../store/pool.ts';
import type { OpenedQueue, QueueProcess } from '../queue.ts';
import { PgQueueConsumer } from './consumer.ts';
import { PgQueueProducer } from './producer.ts';

/**
 * What the Postgres queue takes from the configuration, and nothing else: built from `Config` in one
 * place (queue/open-queue.ts `postgresQueueSettings`).
 */
export interface PostgresQueueSettings {
  /** The database that holds intake.queue: DATABASE_URL, or the embedded cluster's. */
  databaseUrl: string;
  /** INTAKE_PUBLISH_TIMEOUT_MS: a publish is answered by then. */
  publishTimeoutMs: number;
  /** INTAKE_ENQUEUE_LINGER_MS: how long a group waits for more publishes to share its commit. */
  lingerMs: number;
  /** INTAKE_ENQUEUE_MAX_BATCH: most messages in one group commit. */
  maxBatch: number;
  /** INTAKE_MAX_PENDING_PUBLISHES: publishes waiting in this process beyond which 503 is answered. */
  maxPending: number;
  /** INTAKE_QUEUE_MAX_MESSAGES: messages the table may hold before publishes are refused (QUEUE_FULL). */
  maxQueued: number;
  /** INTAKE_QUEUE_LEASE_MS: how long a claimed batch stays invisible to other workers. */
  leaseMs: number;
}

/**
 * The embedded default queue: a table in the same PostgreSQL as the messages. The producer has a pool
 * of its own; the consumer shares the process's pool (`pool`), the one the worker stores batches with.
 */
export async function openPostgresQueue(
  settings: PostgresQueueSettings,
  proc: QueueProcess & { pool: Pool },
): Promise<OpenedQueue> {
  const { log } = proc;
  // The producer answers by the publish deadline and cancels what still runs then (producer.ts); its
  // connections also carry the deadline as statement and lock timeouts, so PostgreSQL itself aborts a
  // publish that overruns it even if the cancel cannot reach it.
  const producerPool = createPool({
    connectionString: settings.databaseUrl,
    max: 5,
    applicationName: 'intake-queue-producer',
    onError: (err) => log.warn({ err }, 'idle queue connection lost'),
    statementTimeoutMs: settings.publishTimeoutMs,
    lockTimeoutMs: settings.publishTimeoutMs,
    connectionTimeoutMs: settings.publishTimeoutMs,
  });
  const producer = new PgQueueProducer(
    producerPool,
    {
      lingerMs: settings.lingerMs,
      maxBatch: settings.maxBatch,
      maxPending: settings.maxPending,
      maxQueued: settings.maxQueued,
      timeoutMs: settings.publishTimeoutMs,
    },
    log,
  );
  const consumer =
    proc.roles === undefined || proc.roles.includes('worker')
      ? new PgQueueConsumer(proc.pool, { leaseMs: settings.leaseMs })
      : undefined;
  return {
    producer,
    consumer,
    // The producer's pool is its own; the consumer's is the caller's.
    close: async () => {
      await producer.close();
      await consumer?.close();
    },
  };
}
