import { createPool, type Pool } from '../../store/pool.ts';
import type { OpenedQueue, QueueProcess } from '../queue.ts';
import { PgQueueConsumer } from './consumer.ts';
import { inspectTable } from './inspect.ts';
import { PgQueueProducer } from './producer.ts';
import type { PostgresQueueSettings } from './settings.ts';

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
    inspect: () => inspectTable(proc.pool, settings),
    // The producer's pool is its own; the consumer's is the caller's.
    close: async () => {
      await producer.close();
      await consumer?.close();
    },
  };
}
