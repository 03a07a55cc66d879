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
