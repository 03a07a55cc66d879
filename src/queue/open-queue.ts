import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { createPool, type Pool } from '../store/pool.ts';
import { PgQueueConsumer } from './postgres/consumer.ts';
import { PgQueueProducer } from './postgres/producer.ts';
import type { OpenedQueue } from './queue.ts';

/**
 * The queue the configuration names: NATS JetStream when NATS_URL is set, else the Postgres-backed
 * queue in the database at `databaseUrl` (whose pool `pool` the consumer shares).
 */
export async function openQueue(
  config: Config,
  databaseUrl: string,
  pool: Pool,
  log: Logger,
  opts: { metrics?: Metrics; roles?: Array<'api' | 'worker'> } = {},
): Promise<OpenedQueue> {
  if (config.natsUrl) {
    const { openNatsQueue } = await import('./nats/open.ts');
    // Every process exports stream usage and depth; workers also trim what they acknowledged.
    return openNatsQueue(config, log, opts);
  }
  // The producer answers by the publish deadline and cancels what still runs then (postgres/producer.ts); its
  // connections also carry the deadline as statement and lock timeouts, so PostgreSQL itself aborts a
  // publish that overruns it even if the cancel cannot reach it.
  const producerPool = createPool({
    connectionString: databaseUrl,
    max: 5,
    applicationName: 'intake-queue-producer',
    onError: (err) => log.warn({ err }, 'idle queue connection lost'),
    statementTimeoutMs: config.publishTimeoutMs,
    lockTimeoutMs: config.publishTimeoutMs,
    connectionTimeoutMs: config.publishTimeoutMs,
  });
  const producer = new PgQueueProducer(
    producerPool,
    {
      lingerMs: config.enqueueLingerMs,
      maxBatch: config.enqueueMaxBatch,
      maxPending: config.maxPendingPublishes,
      maxQueued: config.queueMaxMessages,
      timeoutMs: config.publishTimeoutMs,
    },
    log,
  );
  const consumer =
    opts.roles === undefined || opts.roles.includes('worker')
      ? new PgQueueConsumer(pool, { leaseMs: config.queueLeaseMs })
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
