import type { ApiKey } from '../auth/api-keys.ts';
import type { SettingValue } from './settings.ts';
import type { TracingConfig } from './tracing.ts';

/**
 * A loaded configuration. Each field names the setting it comes from; its default, bounds and meaning
 * are declared once, in settings.ts (and shown in README.md#configuration).
 */
export interface Config {
  /** The command this configuration was loaded for, as typed after `intake` (empty: `intake` alone). */
  command: string;
  /**
   * `NODE_ENV=production` (in any case) makes explicit secrets mandatory (each command checks those it
   * uses). Any value but production, development and test is refused, so a misspelt production never
   * runs with authentication off and a generated master key.
   */
  production: boolean;
  /**
   * `HOST`. A command serving clients with no API keys (authentication off) listens on `127.0.0.1`
   * instead, and a `HOST` that is not loopback is refused unless `allowNoAuthRemote` (rules.ts).
   */
  host: string;
  /** `INTAKE_ALLOW_NO_AUTH_REMOTE=true`: the operator's explicit consent to serve without keys beyond loopback. */
  allowNoAuthRemote: boolean;
  /** `PORT`. */
  port: number;
  /**
   * `INTAKE_ADMIN_PORT`: when set, the privacy and admin routes (GDPR export, erasure, reveal; dead
   * letters) are served on this port of HOST only, and answer 404 on PORT, the port a public load
   * balancer reaches (src/http/admin-listener.ts).
   */
  adminPort: number | undefined;
  /**
   * `DATABASE_URL`; when absent an embedded PostgreSQL is started under `dataDir`. TLS as libpq spells
   * it in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.crt` checks the server's certificate and
   * host name against that CA (the files named in the URL must be readable at start-up).
   */
  databaseUrl: string | undefined;
  /** `INTAKE_DATA_DIR`, resolved: embedded PostgreSQL cluster and generated dev secrets. */
  dataDir: string;
  /** `NATS_URL` (comma-separated servers); when absent the Postgres-backed queue is used. */
  natsUrl: string | undefined;
  nats: NatsConfig;
  /** `LOG_LEVEL`. */
  logLevel: string;
  /** `INTAKE_ACCESS_LOG`: metrics count every request whatever this says. */
  accessLog: AccessLog;
  /** `INTAKE_BODY_LIMIT_BYTES`: larger bodies get `413`. */
  bodyLimit: number;
  /** `INTAKE_DB_POOL_SIZE`: connections per process. */
  dbPoolSize: number;
  /** `INTAKE_ENQUEUE_LINGER_MS`: how long a publish waits to share a commit with others. */
  enqueueLingerMs: number;
  /** `INTAKE_ENQUEUE_MAX_BATCH`: most messages in one queue commit. */
  enqueueMaxBatch: number;
  /** `INTAKE_PUBLISH_TIMEOUT_MS`: a publish not acknowledged by then answers `503`. */
  publishTimeoutMs: number;
  /** `INTAKE_MAX_PENDING_PUBLISHES`: beyond this many waiting publishes, answer `503`. */
  maxPendingPublishes: number;
  /**
   * `INTAKE_QUEUE_MAX_MESSAGES`: the Postgres queue's size cap. Beyond it publishes are refused with
   * `503 QUEUE_FULL` (the worker is far behind), so the table cannot grow without bound.
   */
  queueMaxMessages: number;
  /**
   * `INTAKE_IDEMPOTENCY_TTL_HOURS`: how long the Postgres queue remembers an Idempotency-Key (rows of
   * intake.idempotency_keys older than this are pruned hourly). NATS has its own,
   * NATS_IDEMPOTENCY_TTL_HOURS.
   */
  idempotencyTtlHours: number;
  /**
   * `INTAKE_QUEUE_LEASE_MS`: how long a batch a worker took from the Postgres queue stays invisible to
   * other workers; a worker that dies leaves it to be taken again after this (NATS has NATS_ACK_WAIT_MS).
   */
  queueLeaseMs: number;
  /**
   * `INTAKE_API_WORKERS`: processes serving the API's port (node:cluster, the kernel spreads
   * connections). For `intake api` on a node or pod with more than one core.
   */
  apiWorkers: number;
  /** `INTAKE_WORKER_BATCH_SIZE` and `INTAKE_WORKER_MAX_WAIT_MS`. */
  workerBatchSize: number;
  workerMaxWaitMs: number;
  /**
   * `INTAKE_WORKER_CONCURRENCY`: batches a worker stores at once, each in its own transaction; below
   * INTAKE_DB_POOL_SIZE, which also serves its other queries.
   */
  workerConcurrency: number;
  /** `INTAKE_WORKER_MAX_ATTEMPTS`: tries before a message goes to `dead_letters`. */
  workerMaxAttempts: number;
  /** `INTAKE_RETENTION_DAYS`: partitions and data keys older than this are dropped. */
  retentionDays: number;
  /**
   * `INTAKE_DEAD_LETTER_RETENTION_DAYS` (at most the message retention, and by default the same):
   * dead letters that failed longer ago are deleted hourly by the API. Past the message retention they
   * could no longer be stored (their partition is gone) nor their IP read (their data key is destroyed).
   */
  deadLetterRetentionDays: number;
  /** `INTAKE_SHUTDOWN_DELAY_MS`: keep serving after readiness turns false (no preStop hook). */
  shutdownDelayMs: number;
  /** `INTAKE_SHUTDOWN_TIMEOUT_MS`: in-flight work is aborted after this. */
  shutdownTimeoutMs: number;
  /** `INTAKE_REQUEST_TIMEOUT_MS` and `INTAKE_HEADERS_TIMEOUT_MS`: slow clients. */
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  /**
   * `INTAKE_LINGERING_TIME_MS` and `INTAKE_LINGERING_TIMEOUT_MS`, as nginx's lingering_time and
   * lingering_timeout: after answering a request whose body it did not read (a refusal), intake reads
   * and discards what the client still sends for at most this long in total, and at most the timeout
   * between reads, then closes, so the client reads the answer, not a reset.
   */
  lingeringTimeMs: number;
  lingeringTimeoutMs: number;
  /**
   * `INTAKE_MAX_CONNECTIONS`: HTTP connections one process holds open at most; past it a new connection
   * gets `503 SERVER_BUSY` and is closed (src/http/connection-limit.ts). Default: defaultMaxConnections().
   */
  maxConnections: number;
  /** `INTAKE_PII_MESSAGE_FIELDS`: top-level `message` keys treated as personal data. */
  piiMessageFields: string[];
  /**
   * `INTAKE_API_KEYS` (or `_FILE`): read only by the commands that authenticate clients or report on
   * keys (their `needs.apiKeys`); empty for the others.
   */
  apiKeys: ApiKey[];
  /** `INTAKE_RATE_LIMIT_PER_SECOND` / `INTAKE_RATE_LIMIT_BURST`: default per-key bucket (undefined: none). */
  defaultRateLimit: { perSecond: number; burst: number } | undefined;
  /**
   * `INTAKE_MIGRATE_ON_START`: apply migrations before serving. By default the all-in-one command does
   * (as graphile-worker and pg-boss do) and `api` and `worker` do not: they refuse a schema older than
   * their build so that only the migration Job changes it.
   */
  migrateOnStart: boolean;
  /**
   * `INTAKE_PII_MASTER_KEY` (or `_FILE`): 32 bytes. Read and checked for the commands that protect or
   * reveal personal data (their `needs.piiKey`), so a bad key fails before anything starts; undefined
   * when not set (outside production privacy/master-key.ts then generates a dev key) or not needed.
   */
  piiMasterKey: Buffer | undefined;
  /** For `doctor`, which reports it as a failed check: why the PII master key could not be used. */
  piiMasterKeyProblem: string | undefined;
  /**
   * `INTAKE_PII_PREVIOUS_MASTER_KEY` (or `_FILE`): during a master key rotation, the key being retired;
   * it only unwraps what it wrapped until `intake keys rotate-master` re-wrapped it (docs/runbooks.md).
   */
  piiPreviousMasterKey: Buffer | undefined;
  /**
   * `INTAKE_DATA_KEY_REFRESH_SECONDS`: how often an API process looks for a newer data key; a rotation
   * takes effect in every running process within this time.
   */
  dataKeyRefreshS: number;
  /**
   * `INTAKE_DATA_KEY_MAX_ENCRYPTIONS`: encryptions one process makes under one data key before it
   * starts a new one (AES-GCM random IVs: 2^32 per key in all, docs/privacy.md).
   */
  dataKeyMaxEncryptions: number;
  /** `INTAKE_ACTOR`: who an operator command is recorded as in the audit log. */
  actor: string;
  /** `INTAKE_HEAPSNAPSHOT_SIGNAL` writes a heap snapshot into `INTAKE_HEAPSNAPSHOT_DIR`: docs/memory-leaks.md. */
  heapSnapshot: { signal: NodeJS.Signals; dir: string };
  /** `intake smoke`: `INTAKE_SMOKE_URL` and the API key it sends, `INTAKE_SMOKE_KEY` (or `_FILE`). */
  smoke: { url: string; key: string | undefined };
  /** OTLP export of spans, from the standard `OTEL_*` variables (config/tracing.ts; docs/tracing.md#export). */
  tracing: TracingConfig;
  /**
   * The secret files this process is configured to read (`NAME_FILE` settings and the settings that
   * name a mounted file), by setting name: `doctor` checks each is mounted and not empty.
   */
  secretFiles: Record<string, string>;
}

/** Which requests get an access-log line (INTAKE_ACCESS_LOG). */
export type AccessLog = SettingValue<'INTAKE_ACCESS_LOG'>;

/** The NATS JetStream queue (settings.ts, group "NATS JetStream"). */
export interface NatsConfig {
  /** `NATS_STREAM` and `NATS_SUBJECT`. */
  stream: string;
  subject: string;
  /** `NATS_CONSUMER`: the durable pull consumer the worker reads. */
  consumer: string;
  /** `NATS_REPLICAS` (3 in a cluster). */
  replicas: number;
  /** `NATS_MAX_AGE_HOURS`: stream retention. */
  maxAgeHours: number;
  /**
   * `NATS_MAX_BYTES` (0: no limit of its own; the server's `max_file_store` and `max_age` bound the
   * stream): the stream's `max_bytes`. With `discard: new`, a full stream refuses publishes (`503
   * QUEUE_FULL`) instead of deleting unprocessed messages. A limit reserves that much of the server's store.
   */
  maxBytes: number;
  /** `NATS_MAX_MSGS` (0: no limit): the stream's `max_msgs`, counted in stream messages (envelopes). */
  maxMsgs: number;
  /**
   * `NATS_TRIM_AT_PERCENT`: when the stream is this full (of NATS_MAX_BYTES or NATS_MAX_MSGS), workers
   * delete its oldest messages down to half this, never one the writer consumer has not acknowledged,
   * so "full" means unprocessed messages; the replay window shrinks under this pressure. 100 trims only
   * once the stream is full.
   */
  trimAtPercent: number;
  /** `NATS_DUPLICATE_WINDOW_S`: server-side publish dedupe and idempotency window. */
  duplicateWindowS: number;
  /** `NATS_ACK_WAIT_MS`: redelivery after this without an ack. */
  ackWaitMs: number;
  /**
   * `NATS_IDEMPOTENCY_TTL_HOURS`: how long an Idempotency-Key is remembered (the max age of the KV
   * bucket `<stream>-idempotency` that holds key → id).
   */
  idempotencyTtlHours: number;
  /**
   * `NATS_IDEMPOTENCY_MAX_BYTES` (0: no limit of its own): the KV bucket's `max_bytes`. With
   * `discard: new`, a full bucket refuses new claims (the request gets 503) rather than evicting
   * keys still inside their window, whose retries would then be stored a second time.
   */
  idempotencyMaxBytes: number;
  /**
   * `NATS_PUBLISH_CONCURRENCY`: grouped publishes (envelopes) awaiting their JetStream ack at once per
   * process; requests arriving meanwhile wait and join the next group. Fewer slots make bigger groups
   * (scripts/bench-publish.ts; docs/capacity-plan.md#measurements-behind-choices-in-the-code).
   */
  publishConcurrency: number;
  /**
   * `NATS_PUBLISH_LINGER_MS`: extra wait for a group to fill while a publish slot is free. 0 groups
   * adaptively (only requests that arrive while all slots await acks are grouped): a JetStream ack is
   * cheap, unlike the fsync the Postgres queue's INTAKE_ENQUEUE_LINGER_MS amortises.
   */
  publishLingerMs: number;
  /**
   * Credentials, any one of: `NATS_USER` + `NATS_PASSWORD` (or `_FILE`), `NATS_TOKEN` (or `_FILE`), or
   * `NATS_CREDS_FILE` (a decentralised-auth .creds file with JWT and NKey seed).
   */
  auth: { user?: string; pass?: string; token?: string; credsFile?: string };
  /**
   * TLS to NATS, read from `NATS_TLS_CA_FILE` (PEM: the CA the server's certificate must chain to; the
   * client then refuses a server without TLS, or with a certificate for another name or from another
   * CA) and, for servers that verify clients, `NATS_TLS_CERT_FILE` + `NATS_TLS_KEY_FILE`. Undefined:
   * TLS only if the server asks for it, checked against the system's CAs.
   */
  tls: { caFile?: string; certFile?: string; keyFile?: string } | undefined;
  /**
   * `NATS_INBOX_PREFIX`: where replies and pulled messages come back. A NATS user restricted to its own
   * prefix (e.g. `_INBOX.intake-api`) cannot read other users' replies.
   */
  inboxPrefix: string;
}
