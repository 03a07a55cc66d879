import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Pool } from '../store/pool.ts';
import type { NatsQueueSettings } from './nats/mod.ts';
import { inspectPostgresQueue, openPostgresQueue, type PostgresQueueSettings } from './postgres/mod.ts';
import type { OpenedQueue, QueueInspection, QueueRole } from './queue.ts';

/**
 * The one place where the configuration becomes queue settings (as pg-boss's attorney.ts turns options
 * into what each part takes): each adapter folder declares the narrow settings it uses and never reads
 * `Config` itself, so a new queue setting is one field there and one line here.
 */
export function natsQueueSettings(
  config: Pick<
    Config,
    | 'natsUrl'
    | 'nats'
    | 'publishTimeoutMs'
    | 'enqueueMaxBatch'
    | 'maxPendingPublishes'
    | 'workerMaxAttempts'
    | 'bodyLimit'
  >,
): NatsQueueSettings {
  return {
    servers: (config.natsUrl ?? '').split(',').map((s) => s.trim()),
    nats: config.nats,
    publishTimeoutMs: config.publishTimeoutMs,
    maxBatch: config.enqueueMaxBatch,
    maxPending: config.maxPendingPublishes,
    // The worker dead-letters after INTAKE_WORKER_MAX_ATTEMPTS; the server stops a message only well
    // after that, when it keeps crashing workers.
    maxDeliver: config.workerMaxAttempts + 10,
    bodyLimitBytes: config.bodyLimit,
  };
}

/** The Postgres queue's settings; `databaseUrl` is the database the process resolved (maybe embedded). */
export function postgresQueueSettings(
  config: Pick<
    Config,
    | 'publishTimeoutMs'
    | 'enqueueLingerMs'
    | 'enqueueMaxBatch'
    | 'maxPendingPublishes'
    | 'queueMaxMessages'
    | 'queueLeaseMs'
  >,
  databaseUrl: string,
): PostgresQueueSettings {
  return {
    databaseUrl,
    publishTimeoutMs: config.publishTimeoutMs,
    lingerMs: config.enqueueLingerMs,
    maxBatch: config.enqueueMaxBatch,
    maxPending: config.maxPendingPublishes,
    maxQueued: config.queueMaxMessages,
    leaseMs: config.queueLeaseMs,
  };
}

/**
 * The queue the configuration names: NATS JetStream when NATS_URL is set, else the Postgres-backed
 * queue in the database at `databaseUrl` (whose pool `pool` the consumer shares). Both adapters open
 * the same way: their settings, and what the process brings.
 */
export async function openQueue(
  config: Config,
  databaseUrl: string,
  pool: Pool,
  log: Logger,
  opts: { metrics?: Metrics; roles?: QueueRole[] } = {},
): Promise<OpenedQueue> {
  if (config.natsUrl) {
    // Loaded only when used: the embedded default never loads the NATS client.
    const { openNatsQueue } = await import('./nats/mod.ts');
    return openNatsQueue(natsQueueSettings(config), { log, ...opts });
  }
  return openPostgresQueue(postgresQueueSettings(config, databaseUrl), { log, ...opts, pool });
}

/**
 * `intake migrate`'s part for the queue: on NATS the stream, consumer and buckets are created or brought
 * in line with the configuration; the Postgres queue's table comes with the database migrations.
 */
export async function setUpQueue(config: Config, log: Logger): Promise<void> {
  if (!config.natsUrl) return;
  const { setUpNatsQueue } = await import('./nats/mod.ts');
  await setUpNatsQueue(natsQueueSettings(config), log);
}

/**
 * A one-shot look at the configured queue over a connection of its own, as `clientName` (`intake
 * doctor`): the same reading as OpenedQueue.inspect, without opening the queue, which would create or
 * fix the stream and write readiness probes. Creates, fixes and writes nothing.
 */
export async function inspectQueue(
  config: Config,
  databaseUrl: string,
  clientName: string,
): Promise<QueueInspection> {
  if (config.natsUrl) {
    const { inspectNatsQueue } = await import('./nats/mod.ts');
    return inspectNatsQueue(natsQueueSettings(config), clientName);
  }
  return inspectPostgresQueue(postgresQueueSettings(config, databaseUrl), clientName);
}
