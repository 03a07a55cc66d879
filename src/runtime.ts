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
import type { IpProtector } from './privacy/ip-protector.ts';
import { loadMasterKeys } from './privacy/master-key.ts';
import { openPiiKeys } from './privacy/pii-keys.ts';
import { openQueue } from './queue/open-queue.ts';
import { expireDeadLetters } from './store/dead-letters.ts';
import { startEmbeddedPostgres } from './store/embedded-postgres.ts';
import { assertSchemaCurrent, migrate } from './store/migrate.ts';
import { dropExpiredPartitions, ensurePartitions } from './store/partitions.ts';
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
 * the HTTP server. Shutdown undoes it in the order that loses nothing: stop taking requests, finish
 * them, let queued publishes commit, flush the worker's batch, close the pool, stop the embedded DB.
 *
 * A start that fails undoes what it had started, in reverse order and within INTAKE_SHUTDOWN_TIMEOUT_MS,
 * then rejects with a one-line `StartError` naming the stage: nothing it started is left running or
 * logging once it has rejected (the caller prints that line last and exits).
 */
export async function startIntake(config: Config, roles: Role[], log: Logger): Promise<Running> {
  const metrics = createMetrics();
  const lifecycle = new Lifecycle();
  const shutdown = new Shutdown(log, config.shutdownTimeoutMs);
  // What has been started so far, with how to undo it, in start order.
  const started: Array<{ name: string; undo: () => Promise<void> }> = [];
  let stage = 'embedded PostgreSQL';
  checkHeapLimit(log);
  try {
    let databaseUrl = config.databaseUrl;
    let stopEmbedded: (() => Promise<void>) | undefined;
    if (!databaseUrl) {
      const pg = await startEmbeddedPostgres(config.dataDir, log);
      databaseUrl = pg.url;
      stopEmbedded = pg.stop;
      started.push({ name: 'embedded postgres', undo: pg.stop });
    }
    stage = 'database migrations';
    if (!config.databaseUrl || config.migrateOnStart)
      await migrate(databaseUrl, log, { retentionDays: config.retentionDays });

    const pool = createPool({
      connectionString: databaseUrl,
      max: config.dbPoolSize,
      applicationName: `intake-${roles.join('+')}`,
      onError: (err) => log.warn({ err }, 'idle database connection lost'),
    });
    started.push({ name: 'database pool', undo: () => pool.end() });
    stage = 'database schema check';
    // api and worker refuse a database older than their build: only the migration Job changes it.
    await assertSchemaCurrent(pool);

    stage = 'queue';
    const queue = await openQueue(config, databaseUrl, pool, log, { metrics, roles });
    started.push({ name: 'queue', undo: () => queue.close() });
    const { producer, consumer } = queue;

    let worker: Worker | undefined;
    const maintenance = new Maintenance(log, metrics);
    started.push({ name: 'maintenance', undo: async () => maintenance.stop() });
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
    if (consumer) {
      stage = 'worker';
      await ensurePartitions(pool).catch((err) => log.warn({ err }, 'could not pre-create partitions yet'));
      worker = new Worker(
        consumer,
        pool,
        {
          batchSize: config.workerBatchSize,
          maxWaitMs: config.workerMaxWaitMs,
          maxAttempts: config.workerMaxAttempts,
          concurrency: config.workerConcurrency,
          // On the Postgres queue a claim that overlaps the storing transaction costs PostgreSQL more
          // (50 -> 60 us/row, fewer rows/s, in one-process A/B runs); on JetStream it is neutral or better.
          prefetch: Boolean(config.natsUrl),
        },
        log,
        metrics,
      );
      worker.start();
      // Before the queue and the pool it uses: a worker left running after them fails every batch.
      started.push({ name: 'worker', undo: () => worker!.stop() });
      maintenance.every('partitions', 3_600_000, () => maintainPartitions(pool, config.retentionDays, log));
    }

    // Only the API encrypts (and, for privacy requests, decrypts): a worker never loads the PII key.
    let ipProtector: IpProtector = WITHOUT_PII_KEY;
    if (roles.includes('api')) {
      stage = 'PII keys';
      // A development master key is written into the data directory: private to this user first.
      if (!config.piiMasterKey && !config.production) await makePrivateDir(config.dataDir, log);
      const keys = await openPiiKeys(pool, await loadMasterKeys(config, log), {
        fields: config.piiMessageFields,
        maxEncryptions: config.dataKeyMaxEncryptions,
        log,
        onBudgetRotation: (key, previous) =>
          writeAudit(pool, 'intake-api', 'rotate-key', null, { key, previous, reason: 'encryption budget' }),
      });
      ipProtector = keys.protector;
      const { dataKeys } = keys;
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
            log.info(
              { expired, days: config.deadLetterRetentionDays },
              'dead letters past retention deleted',
            );
        },
        { now: true },
      );
      maintenance.every('data-key-retention', 3_600_000, async () => {
        const destroyed = await dataKeys.destroyBefore(
          new Date(Date.now() - config.retentionDays * 86_400_000),
        );
        if (destroyed.length) {
          await writeAudit(pool, 'retention', 'destroy-keys', null, { keys: destroyed });
          log.info({ keys: destroyed }, 'data keys past retention destroyed');
        }
      });
    }
    stage = 'HTTP server';
    const app = await buildApp({
      queue: producer,
      ingest: new Ingest({
        queue: producer,
        ipProtector,
        metrics,
        piiFields: config.piiMessageFields,
        publishTimeoutMs: config.publishTimeoutMs,
      }),
      db: pool,
      metrics,
      log,
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
    started.push({ name: 'http server', undo: () => app.close() });
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
    const adminUrl = await app.adminListener?.listen(config.adminPort!, config.host);
    if (adminUrl) log.info({ adminUrl }, 'privacy and admin routes served on their own port only');
    log.info(
      { url: listening, roles, queue: config.natsUrl ? 'nats' : 'postgres', embedded: !config.databaseUrl },
      'intake started',
    );

    shutdown.add('readiness off', async () => {
      lifecycle.draining = true;
      metrics.ready.set(0);
      maintenance.stop();
    });
    // Without a preStop hook, keep serving while load balancers notice readiness went false.
    shutdown.add('propagation delay', () => new Promise((r) => setTimeout(r, config.shutdownDelayMs)));
    shutdown.add('http server', () => {
      lifecycle.closing = true;
      return Promise.all([closeHttp(app, config.shutdownTimeoutMs), app.adminListener?.close()]).then(
        () => {},
      );
    });
    // Requests in flight (and so their publishes) ended with the HTTP server; the worker finishes its
    // batch; then the queue hands back what was pulled and not processed, and closes its connections.
    shutdown.add('worker', async () => worker?.stop());
    shutdown.add('queue', () => queue.close());
    shutdown.add('database pool', () => pool.end());
    // Even after a second Ctrl-C: a postmaster left running would refuse the next start.
    if (stopEmbedded) shutdown.add('embedded postgres', stopEmbedded, { evenIfAborted: true });

    return {
      config,
      pool,
      metrics,
      lifecycle,
      app,
      worker,
      url,
      databaseUrl,
      shutdown: (reason) => shutdown.run(reason).then(() => {}),
      shutdownSteps: shutdown,
    };
  } catch (err) {
    // Logged before the undo, at debug: the one line the caller prints is the report; this has the stack.
    log.debug({ err, stage }, 'start failed');
    if (started.length > 0) {
      const undo = new Shutdown(log, config.shutdownTimeoutMs);
      for (const { name, undo: fn } of started.reverse()) undo.add(name, fn);
      await undo.run('start failed');
    }
    throw new StartError(stage, err);
  }
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

async function maintainPartitions(pool: Pool, retentionDays: number, log: Logger): Promise<void> {
  const created = await ensurePartitions(pool);
  const dropped = await dropExpiredPartitions(pool, retentionDays);
  if (created || dropped.length) log.info({ created, dropped }, 'partitions maintained');
}
