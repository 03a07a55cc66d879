import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ClusterBuckets } from './auth/cluster-buckets.ts';
import { type Config, isLoopback } from './config.ts';
import { buildApp } from './http/app.ts';
import { Lifecycle } from './http/app-deps.ts';
import { closeHttp } from './http/close-server.ts';
import { Ingest } from './ingest/ingest.ts';
import type { Logger } from './ops/logger.ts';
import { Maintenance } from './ops/maintenance.ts';
import { checkHeapLimit } from './ops/memory.ts';
import { createMetrics, type Metrics } from './ops/metrics.ts';
import { makePrivateDir } from './ops/private-dir.ts';
import { Shutdown } from './ops/shutdown.ts';
import { idOnlyTracing, type Tracing } from './ops/tracing.ts';
import { startTracing } from './ops/tracing-start.ts';
import type { IpProtector } from './privacy/ip-protector.ts';
import { loadMasterKeys } from './privacy/master-key.ts';
import { openPiiKeys } from './privacy/pii-keys.ts';
import { openQueue } from './queue/open-queue.ts';
import type { QueueConsumer, QueueProducer } from './queue/queue.ts';
import { expireDeadLetters } from './store/dead-letters.ts';
import { startEmbeddedPostgres } from './store/embedded-postgres.ts';
import { pruneErasedMessages } from './store/message-status.ts';
import { assertSchemaCurrent, migrate } from './store/migrate.ts';
import { canMaintainPartitions, maintainPartitions, partitionsAheadDays } from './store/partitions.ts';
import { createPool, type Pool } from './store/pool.ts';
import { pruneIdempotencyKeys } from './store/queue-table.ts';
import { writeAudit } from './store/subjects.ts';
import { Worker } from './worker/worker.ts';

export type Role = 'api' | 'worker';

/** A started intake process (any combination of roles), as the CLI and the tests hold it. */
export interface Running {
  config: Config;
  pool: Pool;
  metrics: Metrics;
  lifecycle: Lifecycle;
  app: FastifyInstance | undefined;
  worker: Worker | undefined;
  /** The trace seam: OTLP export when the OTEL_* environment asks for it (docs/tracing.md), else ids only. */
  tracing: Tracing;
  /** `http://host:port` the server listens on. */
  url: string;
  databaseUrl: string;
  /** Staged graceful shutdown (docs/architecture.md); idempotent. */
  shutdown(reason: string): Promise<void>;
  /** The same shutdown's steps, for the process exit path (signals, deadline, abort). */
  shutdownSteps: Shutdown;
}

/**
 * Starts intake: database (embedded when DATABASE_URL is unset), schema, queue, then the worker and/or
 * the API role, then the HTTP server. Each resource registers its release on one stack as it is
 * acquired (`Shutdown.release`), and a stop and a failed start unwind that same stack, last in first
 * out. A stop first turns readiness off and waits for load balancers to notice; the stack then loses
 * nothing: the HTTP server closes before the queue (requests in flight, and so their publishes, end
 * with it), the worker flushes its batch before the queue closes, the pool closes after the queue, and
 * the embedded PostgreSQL stops last.
 *
 * A start that fails unwinds what it had acquired within INTAKE_SHUTDOWN_TIMEOUT_MS, then rejects with
 * a one-line `StartError` naming the stage: nothing it started is left running or logging once it has
 * rejected (the caller prints that line last and exits).
 */
export async function startIntake(config: Config, roles: Role[], log: Logger): Promise<Running> {
  const metrics = createMetrics();
  const lifecycle = new Lifecycle();
  const shutdown = new Shutdown(log, config.shutdownTimeoutMs);
  const start: Start = { config, roles, log, metrics, tracing: idOnlyTracing, shutdown, stage: 'tracing' };
  checkHeapLimit(log);
  try {
    // Tracing (docs/tracing.md): ids only unless the OTEL_* environment asks for export. Its release is
    // registered first so that it runs LAST, after the HTTP server, the worker and the queue ended
    // their spans: the last spans are flushed, not lost.
    const tracing = await startTracing(config.tracing, roles.join(','), log, {
      system: config.natsUrl ? 'nats' : 'postgresql',
      destination: config.natsUrl ? config.nats.subject : 'intake.queue',
    });
    start.tracing = tracing;
    shutdown.release('tracing', () => tracing.shutdown());
    start.stage = 'embedded PostgreSQL';
    const { databaseUrl, pool } = await openDatabase(start);
    start.stage = 'queue';
    const queue = await openQueue(config, databaseUrl, pool, log, { metrics, roles });
    shutdown.release('queue', () => queue.close());
    const { producer, consumer } = queue;

    const maintenance = new Maintenance(log, metrics);
    // Even after a second Ctrl-C (it only clears timers): jobs left running would query a pool and a
    // database that are going away, and log their failures on the way out.
    shutdown.release('maintenance', async () => maintenance.stop(), { evenIfAborted: true });
    // Both roles export the backlog, so it stays visible with every worker down.
    maintenance.every(
      'queue-depth',
      5_000,
      async () => {
        const d = await (consumer ?? producer).depth();
        if (d !== undefined) metrics.queueDepth.set(d);
      },
      { now: true },
    );
    const worker = consumer ? await startWorkerRole(start, consumer, pool, maintenance) : undefined;
    const ipProtector = roles.includes('api')
      ? await startApiRole(start, pool, maintenance)
      : WITHOUT_PII_KEY;
    const { app, url } = await startHttp(start, { producer, pool, ipProtector, lifecycle });

    // A stop begins here, then unwinds the stack above. Not registered earlier: a failed start has
    // no readiness to turn off and nothing to wait for.
    shutdown.add('readiness off', async () => {
      lifecycle.draining = true;
      metrics.ready.set(0);
    });
    // Without a preStop hook, keep serving while load balancers notice readiness went false.
    shutdown.add('propagation delay', () => new Promise((r) => setTimeout(r, config.shutdownDelayMs)));

    return {
      config,
      pool,
      metrics,
      lifecycle,
      app,
      worker,
      tracing,
      url,
      databaseUrl,
      shutdown: (reason) => shutdown.run(reason).then(() => {}),
      shutdownSteps: shutdown,
    };
  } catch (err) {
    // Logged before the unwinding, at debug: the one line the caller prints is the report; this has the stack.
    log.debug({ err, stage: start.stage }, 'start failed');
    if (shutdown.stepNames.length > 0) await shutdown.run('start failed');
    throw new StartError(start.stage, err);
  }
}

/** What the stages of a start share. */
interface Start {
  config: Config;
  roles: Role[];
  log: Logger;
  metrics: Metrics;
  /** Spans of requests, publishes and the worker's batches (ops/tracing.ts). */
  tracing: Tracing;
  /** Where each resource registers its release as soon as it is acquired. */
  shutdown: Shutdown;
  /** The stage in progress, which a StartError names if the start fails there. */
  stage: string;
}

/** The database: an embedded PostgreSQL without DATABASE_URL, migrations where due, the pool, the schema check. */
async function openDatabase(start: Start): Promise<{ databaseUrl: string; pool: Pool }> {
  const { config, roles, log, shutdown } = start;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    start.stage = 'embedded PostgreSQL';
    const pg = await startEmbeddedPostgres(config.dataDir, log);
    // Even after a second Ctrl-C: a postmaster left running would refuse the next start.
    shutdown.release('embedded postgres', pg.stop, { evenIfAborted: true });
    databaseUrl = pg.url;
  }
  start.stage = 'database migrations';
  if (!config.databaseUrl || config.migrateOnStart)
    await migrate(databaseUrl, log, { retentionDays: config.retentionDays });

  const pool = createPool({
    connectionString: databaseUrl,
    max: config.dbPoolSize,
    applicationName: `intake-${roles.join('+')}`,
    onError: (err) => log.warn({ err }, 'idle database connection lost'),
  });
  shutdown.release('database pool', () => pool.end());
  start.stage = 'database schema check';
  // api and worker refuse a database older than their build: only the migration Job changes it.
  await assertSchemaCurrent(pool);
  return { databaseUrl, pool };
}

/** The worker role: takes messages from the queue and stores them in batches; keeps partitions ahead. */
async function startWorkerRole(
  start: Start,
  consumer: QueueConsumer,
  pool: Pool,
  maintenance: Maintenance,
): Promise<Worker> {
  const { config, log, metrics, tracing } = start;
  start.stage = 'worker';
  // Partition DDL is the migration owner's (migration 010): a worker logged in as intake_worker leaves
  // it to `intake migrate` and `intake maintain`; one logged in as the owner (`npm start`) does it too.
  const owner = await canMaintainPartitions(pool).catch((err) => {
    log.warn({ err }, 'could not check the right to maintain partitions; leaving it to intake maintain');
    return false;
  });
  if (owner)
    await keepPartitions(pool, config.retentionDays, log).catch((err) =>
      log.warn({ err }, 'could not maintain partitions yet'),
    );
  else
    log.info(
      'partition maintenance left to `intake migrate` and `intake maintain` (this role may not run it)',
    );
  const worker = new Worker(
    consumer,
    pool,
    {
      batchSize: config.workerBatchSize,
      maxWaitMs: config.workerMaxWaitMs,
      maxAttempts: config.workerMaxAttempts,
      concurrency: config.workerConcurrency,
      // On the Postgres queue a claim that overlaps the storing transaction costs PostgreSQL more per
      // row; on JetStream it is neutral or better (docs/capacity-plan.md#measurements-behind-choices-in-the-code).
      prefetch: Boolean(config.natsUrl),
      tracing,
    },
    log,
    metrics,
  );
  worker.start();
  // Released before the queue and the pool it uses: a worker left running after them fails every batch.
  start.shutdown.release('worker', () => worker.stop());
  if (owner)
    maintenance.every('partitions', 3_600_000, () => keepPartitions(pool, config.retentionDays, log));
  // The erased-message records (message status) expire with the window the partitions do; the worker
  // role may run this bounded function (migration 008), whoever keeps the partitions.
  maintenance.every('erased-records-retention', 3_600_000, async () => {
    const erasedRecords = await pruneErasedMessages(pool);
    if (erasedRecords) log.info({ erasedRecords }, 'erased-message records past retention deleted');
  });
  maintenance.every(
    'partitions-ahead',
    300_000,
    async () => metrics.partitionsAheadDays.set(await partitionsAheadDays(pool)),
    { now: true },
  );
  return worker;
}

/**
 * The API role's own keeping: the PII keys (only the API encrypts, and decrypts for privacy requests:
 * a worker never loads them) and the periodic jobs that go with them and with dead letters. Returns
 * the protector the routes encrypt with.
 */
async function startApiRole(start: Start, pool: Pool, maintenance: Maintenance): Promise<IpProtector> {
  const { config, log } = start;
  start.stage = 'PII keys';
  // A development master key is written into the data directory: private to this user first.
  if (!config.piiMasterKey && !config.production) await makePrivateDir(config.dataDir, log);
  const { protector, dataKeys } = await openPiiKeys(pool, await loadMasterKeys(config, log), {
    fields: config.piiMessageFields,
    maxEncryptions: config.dataKeyMaxEncryptions,
    log,
    onBudgetRotation: (key, previous) =>
      writeAudit(pool, 'intake-api', 'rotate-key', null, { key, previous, reason: 'encryption budget' }),
  });
  await dataKeys.refresh();
  // The newest key (a rotation anywhere, the day's key) is in use here within this interval; if
  // PostgreSQL is down the current key stays in use.
  maintenance.every('data-key-refresh', config.dataKeyRefreshS * 1000, () =>
    dataKeys.refresh().then(() => {}),
  );
  if (!config.natsUrl) {
    maintenance.every('idempotency-prune', 3_600_000, () =>
      pruneIdempotencyKeys(pool, config.idempotencyTtlHours).then(() => {}),
    );
  }
  // The API role may delete dead letters (discard); at start too, so a process down for days catches up.
  maintenance.every(
    'dead-letter-retention',
    3_600_000,
    async () => {
      const expired = await expireDeadLetters(pool, config.deadLetterRetentionDays);
      if (expired)
        log.info({ expired, days: config.deadLetterRetentionDays }, 'dead letters past retention deleted');
    },
    { now: true },
  );
  maintenance.every('data-key-retention', 3_600_000, async () => {
    const destroyed = await dataKeys.destroyBefore(new Date(Date.now() - config.retentionDays * 86_400_000));
    if (destroyed.length) {
      await writeAudit(pool, 'retention', 'destroy-keys', null, { keys: destroyed });
      log.info({ keys: destroyed }, 'data keys past retention destroyed');
    }
  });
  return protector;
}

/**
 * The HTTP server (every route with the API role, else only health and metrics) and, with
 * INTAKE_ADMIN_PORT, its admin listener. Resolves to the app and the URL it listens on.
 */
async function startHttp(
  start: Start,
  deps: { producer: QueueProducer; pool: Pool; ipProtector: IpProtector; lifecycle: Lifecycle },
): Promise<{ app: FastifyInstance; url: string }> {
  const { config, roles, log, metrics, tracing, shutdown } = start;
  const { producer, pool, ipProtector, lifecycle } = deps;
  start.stage = 'HTTP server';
  const app = await buildApp({
    queue: producer,
    ingest: new Ingest({
      queue: producer,
      ipProtector,
      metrics,
      piiFields: config.piiMessageFields,
      publishTimeoutMs: config.publishTimeoutMs,
      tracing,
    }),
    db: pool,
    metrics,
    log,
    tracing,
    ipProtector,
    lifecycle,
    auth: {
      keys: config.apiKeys,
      defaultRateLimit: config.defaultRateLimit,
      // An API process of INTAKE_API_WORKERS: the pod's buckets, held by the primary (ops/api-cluster.ts).
      ...(cluster.isWorker ? { buckets: new ClusterBuckets(process, config.apiWorkers) } : {}),
    },
    routes: roles.includes('api') ? 'all' : 'ops',
    options: {
      bodyLimit: config.bodyLimit,
      requestTimeoutMs: config.requestTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
      lingeringTimeMs: config.lingeringTimeMs,
      lingeringTimeoutMs: config.lingeringTimeoutMs,
      maxConnections: config.maxConnections,
      accessLog: config.accessLog,
      separateAdminRoutes: config.adminPort !== undefined && roles.includes('api'),
    },
  });
  // Both released before the listeners open, so a listen that fails is unwound too. The admin
  // listener's release is registered first so that it runs after the main server's: closing the main
  // listener marks every answer, on either port, `Connection: close` (lifecycle.closing), so the admin
  // listener then closes at once rather than waiting out a keep-alive.
  const { adminListener } = app;
  if (adminListener) shutdown.release('admin listener', () => adminListener.close());
  shutdown.release('http server', () => {
    lifecycle.closing = true;
    return closeHttp(app, config.shutdownTimeoutMs);
  });
  const url = await app.listen({ port: config.port, host: config.host });
  // The address really bound (0.0.0.0 is every interface), not the loopback URL Fastify returns for it.
  const bound = app.server.address() as AddressInfo;
  const listening = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  if (roles.includes('api') && config.apiKeys.length === 0) {
    // Only reachable outside production (config refuses production without keys).
    log.warn(
      { listening },
      `AUTHENTICATION IS OFF: no INTAKE_API_KEYS configured, anyone who can reach ${listening} can ingest, read, ` +
        `export and erase${isLoopback(bound.address) ? ' (loopback only)' : ' (INTAKE_ALLOW_NO_AUTH_REMOTE=true)'}. ` +
        'Create keys with `intake keys create` before exposing it.',
    );
  }
  const adminUrl = await adminListener?.listen(config.adminPort!, config.host);
  if (adminUrl) log.info({ adminUrl }, 'privacy and admin routes served on their own port only');
  log.info(
    { url: listening, roles, queue: config.natsUrl ? 'nats' : 'postgres', embedded: !config.databaseUrl },
    'intake started',
  );
  return { app, url };
}

/**
 * `intake start|api|worker` could not start; what it had started is stopped again. Its message is the
 * one line the CLI prints: the stage and what went wrong. The error itself is `reason`, not `cause`:
 * the CLI prints a cause on a line of its own, and this message already says it.
 */
export class StartError extends Error {
  override name = 'StartError';
  constructor(
    /** What was being started: `HTTP server`, `queue`, `database migrations`, … */
    readonly stage: string,
    /** The error that stopped the start. */
    readonly reason: unknown,
  ) {
    super(`could not start (${stage}): ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}

/**
 * The protector of a process without the API role. Such a process registers only health and metrics
 * routes, so nothing calls it; if a future route did, it fails loudly instead of storing clear text.
 */
const WITHOUT_PII_KEY: IpProtector = ((noKey: () => never) => ({
  fields: [],
  protect: noKey,
  pseudonym: noKey,
  fingerprint: noKey,
  reveal: noKey,
  reserve: noKey,
}))(() => {
  throw new Error('this process has no API role and holds no PII key');
});

async function keepPartitions(pool: Pool, retentionDays: number, log: Logger): Promise<void> {
  const { created, dropped } = await maintainPartitions(pool, retentionDays);
  if (created || dropped.length) log.info({ created, dropped }, 'partitions maintained');
}
