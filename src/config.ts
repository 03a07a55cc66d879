import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { type ApiKey, parseApiKeys } from './auth/api-keys.ts';

/**
 * Everything intake reads from its environment, validated in one place. A wrong setting fails start-up
 * with one line per problem that names the variable and says what to set (12-factor: env or `*_FILE`).
 */
const ACCESS_LOG = ['all', 'errors', 'off'] as const;
/** Which requests get an access-log line (INTAKE_ACCESS_LOG). */
export type AccessLog = (typeof ACCESS_LOG)[number];

export interface Config {
  /** The command this configuration was loaded for: it decides what is read and what is required. */
  command: Command;
  /**
   * `NODE_ENV=production` (in any case) makes explicit secrets mandatory (each command checks those it
   * uses). Any value but production, development and test is refused, so a misspelt production never
   * runs with authentication off and a generated master key.
   */
  production: boolean;
  /**
   * Listen address of the HTTP server (`HOST`; `PORT`, default 8080). Default `0.0.0.0`, except for
   * `start` and `api` with no API keys (authentication off): `127.0.0.1`, and a `HOST` that is not
   * loopback is refused unless `INTAKE_ALLOW_NO_AUTH_REMOTE=true` (docs/contract.md §6).
   */
  host: string;
  /** `INTAKE_ALLOW_NO_AUTH_REMOTE=true`: the operator's explicit consent to serve without keys beyond loopback. */
  allowNoAuthRemote: boolean;
  port: number;
  /**
   * `INTAKE_ADMIN_PORT` (default unset): when set, the privacy and admin routes (GDPR export, erasure,
   * reveal; dead letters) are served on this port of HOST only, and answer 404 on PORT, the port a public
   * load balancer reaches (src/http/admin-listener.ts).
   */
  adminPort: number | undefined;
  /**
   * `DATABASE_URL`; when absent an embedded PostgreSQL is started under `dataDir`. TLS as libpq spells
   * it in the URL: `?sslmode=verify-full&sslrootcert=/path/ca.crt` checks the server's certificate and
   * host name against that CA (the files named in the URL must be readable at start-up).
   */
  databaseUrl: string | undefined;
  /** `INTAKE_DATA_DIR` (default `./.intake`): embedded PostgreSQL cluster and generated dev secrets. */
  dataDir: string;
  /** `NATS_URL` (comma-separated servers); when absent the Postgres-backed queue is used. */
  natsUrl: string | undefined;
  nats: NatsConfig;
  /** `LOG_LEVEL` (default `info`). */
  logLevel: string;
  /**
   * `INTAKE_ACCESS_LOG` (default `all`): which requests get an access-log line at `info`: `all`,
   * `errors` (status 400 and above) or `off`. The line costs ~10 % of the API's CPU per message
   * (docs/capacity-plan.md); metrics count every request whatever this says.
   */
  accessLog: AccessLog;
  /** `INTAKE_BODY_LIMIT_BYTES` (default 1 MiB): larger bodies get `413`. */
  bodyLimit: number;
  /** `INTAKE_DB_POOL_SIZE` (default 10): connections per process. */
  dbPoolSize: number;
  /** `INTAKE_ENQUEUE_LINGER_MS` (default 2): how long a publish waits to share a commit with others. */
  enqueueLingerMs: number;
  /** `INTAKE_ENQUEUE_MAX_BATCH` (default 500): most messages in one queue commit. */
  enqueueMaxBatch: number;
  /** `INTAKE_PUBLISH_TIMEOUT_MS` (default 2000): a publish not acknowledged by then answers `503`. */
  publishTimeoutMs: number;
  /** `INTAKE_MAX_PENDING_PUBLISHES` (default 20000): beyond this many waiting publishes, answer `503`. */
  maxPendingPublishes: number;
  /**
   * `INTAKE_QUEUE_MAX_MESSAGES` (default 1000000): the Postgres queue's size cap. Beyond it publishes
   * are refused with `503 QUEUE_FULL` (the worker is far behind), so the table cannot grow without bound.
   */
  queueMaxMessages: number;
  /**
   * `INTAKE_IDEMPOTENCY_TTL_HOURS` (default 24): how long the Postgres queue remembers an
   * Idempotency-Key (rows of intake.idempotency_keys older than this are pruned hourly). NATS has its
   * own, NATS_IDEMPOTENCY_TTL_HOURS.
   */
  idempotencyTtlHours: number;
  /**
   * `INTAKE_QUEUE_LEASE_MS` (default 30000): how long a batch a worker took from the Postgres queue stays
   * invisible to other workers; a worker that dies leaves it to be taken again after this (NATS has
   * NATS_ACK_WAIT_MS).
   */
  queueLeaseMs: number;
  /**
   * `INTAKE_API_WORKERS` (default 1): processes serving the API's port (node:cluster, the kernel
   * spreads connections). For `intake api` on a node or pod with more than one core.
   */
  apiWorkers: number;
  /** `INTAKE_WORKER_BATCH_SIZE` (default 1000) and `INTAKE_WORKER_MAX_WAIT_MS` (default 50). */
  workerBatchSize: number;
  workerMaxWaitMs: number;
  /**
   * `INTAKE_WORKER_CONCURRENCY` (default 2): batches a worker stores at once, each in its own
   * transaction; below INTAKE_DB_POOL_SIZE, which also serves its other queries.
   */
  workerConcurrency: number;
  /** `INTAKE_WORKER_MAX_ATTEMPTS` (default 5): tries before a message goes to `dead_letters`. */
  workerMaxAttempts: number;
  /** `INTAKE_RETENTION_DAYS` (default 30): partitions and data keys older than this are dropped. */
  retentionDays: number;
  /**
   * `INTAKE_DEAD_LETTER_RETENTION_DAYS` (default INTAKE_RETENTION_DAYS, at most that): dead letters that
   * failed longer ago are deleted hourly by the API. Past the message retention they could no longer be
   * stored (their partition is gone) nor their IP read (their data key is destroyed).
   */
  deadLetterRetentionDays: number;
  /** `INTAKE_SHUTDOWN_DELAY_MS` (default 0): keep serving after readiness turns false (no preStop hook). */
  shutdownDelayMs: number;
  /** `INTAKE_SHUTDOWN_TIMEOUT_MS` (default 25000): in-flight work is aborted after this. */
  shutdownTimeoutMs: number;
  /** `INTAKE_REQUEST_TIMEOUT_MS` (default 10000) and `INTAKE_HEADERS_TIMEOUT_MS` (5000): slow clients. */
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  /**
   * `INTAKE_LINGERING_TIME_MS` (default 30000) and `INTAKE_LINGERING_TIMEOUT_MS` (5000), as nginx's
   * lingering_time and lingering_timeout: after answering a request whose body it did not read (a
   * refusal), intake reads and discards what the client still sends for at most this long in total,
   * and at most the timeout between reads, then closes, so the client reads the answer, not a reset.
   */
  lingeringTimeMs: number;
  lingeringTimeoutMs: number;
  /**
   * `INTAKE_MAX_CONNECTIONS`: HTTP connections one process holds open at most; past it a new connection
   * gets `503 SERVER_BUSY` and is closed (src/http/connection-limit.ts). Default: defaultMaxConnections().
   */
  maxConnections: number;
  /** `INTAKE_PII_MESSAGE_FIELDS` (comma-separated): top-level `message` keys treated as personal data. */
  piiMessageFields: string[];
  /**
   * `INTAKE_API_KEYS` (or `_FILE`): JSON array of {name, hash, scopes, senders?, rateLimit?}. Read only by
   * the commands that authenticate clients or report on keys (start, api, doctor); empty for the others.
   */
  apiKeys: ApiKey[];
  /** `INTAKE_RATE_LIMIT_PER_SECOND` / `INTAKE_RATE_LIMIT_BURST`: default per-key bucket (0 = none). */
  defaultRateLimit: { perSecond: number; burst: number } | undefined;
  /**
   * `INTAKE_MIGRATE_ON_START`: apply migrations before serving. Default `true` for `start` (the
   * all-in-one command, as graphile-worker and pg-boss do) and `false` for `api` and `worker`, which
   * refuse a schema older than their build so that only the migration Job changes it.
   */
  migrateOnStart: boolean;
  /**
   * `INTAKE_PII_MASTER_KEY` (or `_FILE`): 32 bytes, base64. Read and validated for the commands that
   * protect or reveal personal data (start, api, doctor, pii, keys), so a bad key fails before anything
   * starts; undefined when not set (outside production privacy/master-key.ts then generates a dev key)
   * or not needed.
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
   * `INTAKE_DATA_KEY_REFRESH_SECONDS` (default 10): how often an API process looks for a newer data key;
   * a rotation takes effect in every running process within this time.
   */
  dataKeyRefreshS: number;
  /**
   * `INTAKE_DATA_KEY_MAX_ENCRYPTIONS` (default 2^24): encryptions one process makes under one data key
   * before it starts a new one (AES-GCM random IVs: 2^32 per key in all, docs/privacy.md).
   */
  dataKeyMaxEncryptions: number;
  /** `INTAKE_ACTOR` (default the OS user): who an operator command is recorded as in the audit log. */
  actor: string;
  /**
   * `INTAKE_HEAPSNAPSHOT_SIGNAL` (default SIGUSR2) writes a heap snapshot into `INTAKE_HEAPSNAPSHOT_DIR`
   * (default `<data dir>/heapsnapshots`): docs/memory-leaks.md.
   */
  heapSnapshot: { signal: NodeJS.Signals; dir: string };
  /**
   * `intake smoke`: `INTAKE_SMOKE_URL` (default `http://127.0.0.1:<PORT>`) and the API key it sends,
   * `INTAKE_SMOKE_KEY` (or `_FILE`).
   */
  smoke: { url: string; key: string | undefined };
  /**
   * The secret files this process is configured to read (`NAME_FILE` settings and NATS_CREDS_FILE), by
   * setting name: `doctor` checks each is mounted and not empty.
   */
  secretFiles: Record<string, string>;
}

/** The CLI commands that load a configuration. */
export type Command =
  | 'start'
  | 'api'
  | 'worker'
  | 'migrate'
  | 'doctor'
  | 'smoke'
  | 'pii'
  | 'keys'
  | 'dead-letters';

/**
 * What each command needs from the environment, so a process is never refused for a setting it does
 * not use (the Kubernetes migrate Job mounts no API keys; the worker holds no PII key):
 * - `apiKeys`: `required` (read, and mandatory in production), `read` (read and validated if its file
 *   can be read; `doctor` reports a missing file or key set as failed checks) or `unused` (not read at
 *   all, even when `INTAKE_API_KEYS_FILE` is set);
 * - `queue`: whether NATS settings and credentials are read and validated (else `natsUrl` is unset).
 * - `piiKey`: the PII master key, `required` (read and validated: the API, `pii`, `keys`), `read` (`doctor`
 *   reports a missing or bad key as a failed check) or `unused` (`worker`, `migrate`, `dead-letters` move
 *   ciphertext without reading it);
 * - `database`: whether the command uses PostgreSQL (`DATABASE_URL` mandatory in production).
 */
export const COMMAND_NEEDS: Record<
  Command,
  {
    apiKeys: 'required' | 'read' | 'unused';
    queue: boolean;
    piiKey: 'required' | 'read' | 'unused';
    database: boolean;
  }
> = {
  start: { apiKeys: 'required', queue: true, piiKey: 'required', database: true },
  api: { apiKeys: 'required', queue: true, piiKey: 'required', database: true },
  worker: { apiKeys: 'unused', queue: true, piiKey: 'unused', database: true },
  migrate: { apiKeys: 'unused', queue: true, piiKey: 'unused', database: true }, // provisions the stream
  doctor: { apiKeys: 'read', queue: true, piiKey: 'read', database: true },
  smoke: { apiKeys: 'unused', queue: false, piiKey: 'unused', database: false },
  pii: { apiKeys: 'unused', queue: true, piiKey: 'required', database: true }, // export/erase count queued messages
  keys: { apiKeys: 'unused', queue: false, piiKey: 'required', database: true },
  'dead-letters': { apiKeys: 'unused', queue: true, piiKey: 'unused', database: true }, // replay publishes
};

/** Settings read from mounted files, checked by `doctor`. */
const SECRET_FILE_SETTINGS = [
  'INTAKE_API_KEYS_FILE',
  'INTAKE_PII_MASTER_KEY_FILE',
  'INTAKE_PII_PREVIOUS_MASTER_KEY_FILE',
  'INTAKE_SMOKE_KEY_FILE',
  'DATABASE_URL_FILE',
  'NATS_USER_FILE',
  'NATS_PASSWORD_FILE',
  'NATS_TOKEN_FILE',
  'NATS_CREDS_FILE',
  'NATS_TLS_CA_FILE',
  'NATS_TLS_CERT_FILE',
  'NATS_TLS_KEY_FILE',
];

export interface NatsConfig {
  /** `NATS_STREAM` (default `INTAKE`) and `NATS_SUBJECT` (default `intake.messages`). */
  stream: string;
  subject: string;
  /** `NATS_CONSUMER` (default `intake-writer`): the durable pull consumer the worker reads. */
  consumer: string;
  /** `NATS_REPLICAS` (default 1; 3 in a cluster). */
  replicas: number;
  /** `NATS_MAX_AGE_HOURS` (default 168): stream retention. */
  maxAgeHours: number;
  /**
   * `NATS_MAX_BYTES` (default 0: no limit of its own; the server's `max_file_store` and `max_age` bound
   * the stream): the stream's `max_bytes`, in bytes or with a KB/MB/GB/TB suffix (1024-based, as in
   * nats-server's configuration). With `discard: new`, a full stream refuses publishes (`503 QUEUE_FULL`)
   * instead of deleting unprocessed messages. A limit reserves that much of the server's store.
   */
  maxBytes: number;
  /** `NATS_MAX_MSGS` (default 0: no limit): the stream's `max_msgs`, counted in stream messages (envelopes). */
  maxMsgs: number;
  /**
   * `NATS_TRIM_AT_PERCENT` (default 50): when the stream is this full (of NATS_MAX_BYTES or
   * NATS_MAX_MSGS), workers delete its oldest messages down to half this, never one the writer consumer
   * has not acknowledged, so "full" means unprocessed messages; the replay window shrinks under this
   * pressure. 100 trims only once the stream is full.
   */
  trimAtPercent: number;
  /** `NATS_DUPLICATE_WINDOW_S` (default 120): server-side publish dedupe and idempotency window. */
  duplicateWindowS: number;
  /** `NATS_ACK_WAIT_MS` (default 30000): redelivery after this without an ack. */
  ackWaitMs: number;
  /**
   * `NATS_IDEMPOTENCY_TTL_HOURS` (default 24): how long an Idempotency-Key is remembered (the max age of
   * the KV bucket `<stream>-idempotency` that holds key → id; on the Postgres queue, rows of
   * intake.idempotency_keys older than this are pruned hourly).
   */
  idempotencyTtlHours: number;
  /**
   * `NATS_PUBLISH_CONCURRENCY` (default 2): grouped publishes (envelopes) awaiting their JetStream ack at
   * once per process; requests arriving meanwhile wait and join the next group. Fewer slots make bigger
   * groups (scripts/bench-publish.ts measured 2 ahead of 4 and 8 on one node).
   */
  publishConcurrency: number;
  /**
   * `NATS_PUBLISH_LINGER_MS` (default 0): extra wait for a group to fill while a publish slot is free.
   * 0 groups adaptively (only requests that arrive while all slots await acks are grouped): a JetStream
   * ack costs ~0.15 ms, unlike the fsync the Postgres queue's INTAKE_ENQUEUE_LINGER_MS amortises.
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
   * `NATS_INBOX_PREFIX` (default `_INBOX`): where replies and pulled messages come back. A NATS user
   * restricted to its own prefix (e.g. `_INBOX.intake-api`) cannot read other users' replies.
   */
  inboxPrefix: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads `NAME`, or the contents of the file named by `NAME_FILE` (mounted secrets). */
export function readSecret(env: Env, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readFileSync(file, 'utf8').trim();
  const v = env[name];
  return v === '' ? undefined : v;
}

/** Reads and validates the environment for `command` (default `start`, which needs the most). */
export function loadConfig(env: Env = process.env, command: Command = 'start'): Config {
  const problems: string[] = [];
  const needs = COMMAND_NEEDS[command];

  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return def;
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(raw)} is not valid: set a whole number from ${min} to ${max}`);
      return def;
    }
    return n;
  };
  /** A byte count, plain or with a 1024-based KB/MB/GB/TB suffix (as nats-server's config writes it). */
  const bytes = (name: string, def: number): number => {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === '') return def;
    const m = /^(\d+)\s*(B|KB|MB|GB|TB|K|M|G|T)?$/i.exec(raw);
    const unit = m?.[2]?.toUpperCase().replace(/B$/, '') ?? '';
    const n = m ? Number(m[1]) * 1024 ** ['', 'K', 'M', 'G', 'T'].indexOf(unit) : Number.NaN;
    if (!Number.isSafeInteger(n)) {
      problems.push(
        `${name}=${JSON.stringify(raw)} is not valid: set a byte count such as 8589934592 or 8GB`,
      );
      return def;
    }
    return n;
  };
  const url = (name: string, protocols: string[]): string | undefined => {
    let raw: string | undefined;
    try {
      raw = readSecret(env, name);
    } catch (err) {
      problems.push(`${name}_FILE cannot be read (${(err as Error).message}): point it at a readable file`);
      return undefined;
    }
    if (raw === undefined) return undefined;
    for (const part of raw.split(',')) {
      try {
        const u = new URL(part.trim());
        if (!protocols.includes(u.protocol)) throw new Error('protocol');
      } catch {
        problems.push(
          `${name} is not a valid URL: set it like ${protocols[0]}//host:port${name === 'DATABASE_URL' ? '/db' : ''}`,
        );
        return undefined;
      }
    }
    return raw;
  };

  const production = readNodeEnv(env.NODE_ENV, problems);
  const logLevel = env.LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(
      `LOG_LEVEL=${JSON.stringify(logLevel)} is not valid: set one of fatal, error, warn, info, debug, trace, silent`,
    );
  }

  const accessLog = (env.INTAKE_ACCESS_LOG || 'all') as AccessLog;
  if (!ACCESS_LOG.includes(accessLog)) {
    problems.push(
      `INTAKE_ACCESS_LOG=${JSON.stringify(env.INTAKE_ACCESS_LOG)} is not valid: set one of ${ACCESS_LOG.join(', ')}`,
    );
  }

  const migrateRaw = env.INTAKE_MIGRATE_ON_START;
  let migrateOnStart = command === 'start';
  if (migrateRaw === 'true' || migrateRaw === 'false') migrateOnStart = migrateRaw === 'true';
  else if (migrateRaw !== undefined && migrateRaw !== '')
    problems.push(`INTAKE_MIGRATE_ON_START=${JSON.stringify(migrateRaw)} is not valid: set true or false`);

  const allowRaw = env.INTAKE_ALLOW_NO_AUTH_REMOTE;
  if (allowRaw !== undefined && allowRaw !== '' && allowRaw !== 'true' && allowRaw !== 'false')
    problems.push(`INTAKE_ALLOW_NO_AUTH_REMOTE=${JSON.stringify(allowRaw)} is not valid: set true or false`);

  const cfg: Config = {
    command,
    production,
    host: env.HOST || '0.0.0.0', // loopback when authentication is off: see the end of loadConfig
    allowNoAuthRemote: allowRaw === 'true',
    port: int('PORT', 8080, 0, 65535),
    adminPort: env.INTAKE_ADMIN_PORT ? int('INTAKE_ADMIN_PORT', 0, 1, 65535) : undefined,
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    dataDir: resolve(env.INTAKE_DATA_DIR || './.intake'),
    natsUrl: needs.queue ? url('NATS_URL', ['nats:', 'tls:', 'ws:', 'wss:']) : undefined,
    nats: {
      stream: env.NATS_STREAM || 'INTAKE',
      subject: env.NATS_SUBJECT || 'intake.messages',
      consumer: env.NATS_CONSUMER || 'intake-writer',
      replicas: int('NATS_REPLICAS', 1, 1, 5),
      maxAgeHours: int('NATS_MAX_AGE_HOURS', 168, 1, 24 * 365),
      maxBytes: bytes('NATS_MAX_BYTES', 0),
      maxMsgs: int('NATS_MAX_MSGS', 0, 0, Number.MAX_SAFE_INTEGER),
      trimAtPercent: int('NATS_TRIM_AT_PERCENT', 50, 1, 100),
      duplicateWindowS: int('NATS_DUPLICATE_WINDOW_S', 120, 1, 7 * 24 * 3600),
      ackWaitMs: int('NATS_ACK_WAIT_MS', 30_000, 1000, 3_600_000),
      idempotencyTtlHours: int('NATS_IDEMPOTENCY_TTL_HOURS', 24, 1, 24 * 90),
      publishConcurrency: int('NATS_PUBLISH_CONCURRENCY', 2, 1, 256),
      publishLingerMs: int('NATS_PUBLISH_LINGER_MS', 0, 0, 1000),
      auth: {},
      tls: undefined,
      inboxPrefix: '_INBOX',
    },
    logLevel,
    accessLog,
    bodyLimit: int('INTAKE_BODY_LIMIT_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    dbPoolSize: int('INTAKE_DB_POOL_SIZE', 10, 2, 200),
    enqueueLingerMs: int('INTAKE_ENQUEUE_LINGER_MS', 2, 0, 1000),
    enqueueMaxBatch: int('INTAKE_ENQUEUE_MAX_BATCH', 500, 1, 10_000),
    publishTimeoutMs: int('INTAKE_PUBLISH_TIMEOUT_MS', 2000, 100, 60_000),
    maxPendingPublishes: int('INTAKE_MAX_PENDING_PUBLISHES', 20_000, 1, 1_000_000),
    queueMaxMessages: int('INTAKE_QUEUE_MAX_MESSAGES', 1_000_000, 1, 1_000_000_000),
    idempotencyTtlHours: int('INTAKE_IDEMPOTENCY_TTL_HOURS', 24, 1, 24 * 90),
    queueLeaseMs: int('INTAKE_QUEUE_LEASE_MS', 30_000, 1000, 3_600_000),
    apiWorkers: int('INTAKE_API_WORKERS', 1, 1, 64),
    workerBatchSize: int('INTAKE_WORKER_BATCH_SIZE', 1000, 1, 10_000),
    workerMaxWaitMs: int('INTAKE_WORKER_MAX_WAIT_MS', 50, 1, 60_000),
    workerConcurrency: int('INTAKE_WORKER_CONCURRENCY', 2, 1, 32),
    workerMaxAttempts: int('INTAKE_WORKER_MAX_ATTEMPTS', 5, 1, 100),
    retentionDays: int('INTAKE_RETENTION_DAYS', 30, 1, 3650),
    deadLetterRetentionDays: 0, // below: its default and bound are the message retention
    shutdownDelayMs: int('INTAKE_SHUTDOWN_DELAY_MS', 0, 0, 300_000),
    shutdownTimeoutMs: int('INTAKE_SHUTDOWN_TIMEOUT_MS', 25_000, 100, 600_000),
    requestTimeoutMs: int('INTAKE_REQUEST_TIMEOUT_MS', 10_000, 100, 600_000),
    headersTimeoutMs: int('INTAKE_HEADERS_TIMEOUT_MS', 5_000, 100, 600_000),
    lingeringTimeMs: int('INTAKE_LINGERING_TIME_MS', 30_000, 100, 600_000),
    lingeringTimeoutMs: int('INTAKE_LINGERING_TIMEOUT_MS', 5_000, 100, 600_000),
    maxConnections: int('INTAKE_MAX_CONNECTIONS', defaultMaxConnections(), 1, 1_000_000),
    piiMessageFields: (env.INTAKE_PII_MESSAGE_FIELDS ?? '')
      .split(',')
      .map((f) => f.trim())
      .filter(Boolean),
    apiKeys: [],
    defaultRateLimit: undefined,
    migrateOnStart,
    piiMasterKey: undefined,
    piiMasterKeyProblem: undefined,
    piiPreviousMasterKey: undefined,
    dataKeyRefreshS: int('INTAKE_DATA_KEY_REFRESH_SECONDS', 10, 1, 3600),
    dataKeyMaxEncryptions: int('INTAKE_DATA_KEY_MAX_ENCRYPTIONS', 2 ** 24, 64, 2 ** 30),
    actor: env.INTAKE_ACTOR || osUser(),
    heapSnapshot: {
      signal: (env.INTAKE_HEAPSNAPSHOT_SIGNAL || 'SIGUSR2') as NodeJS.Signals,
      dir: resolve(env.INTAKE_HEAPSNAPSHOT_DIR || join(env.INTAKE_DATA_DIR || './.intake', 'heapsnapshots')),
    },
    smoke: { url: env.INTAKE_SMOKE_URL || '', key: undefined },
    secretFiles: Object.fromEntries(
      SECRET_FILE_SETTINGS.flatMap((name) => (env[name] ? [[name, env[name]!]] : [])),
    ),
  };
  if (cfg.adminPort !== undefined && cfg.adminPort === cfg.port)
    problems.push(`INTAKE_ADMIN_PORT=${cfg.adminPort} is PORT too: set another port, or unset it`);
  cfg.deadLetterRetentionDays = int(
    'INTAKE_DEAD_LETTER_RETENTION_DAYS',
    cfg.retentionDays,
    1,
    cfg.retentionDays,
  );
  cfg.smoke.url ||= `http://127.0.0.1:${cfg.port}`;
  if (!/^https?:\/\//.test(cfg.smoke.url))
    problems.push(`INTAKE_SMOKE_URL=${JSON.stringify(cfg.smoke.url)} is not valid: set http(s)://host:port`);
  try {
    cfg.smoke.key = readSecret(env, 'INTAKE_SMOKE_KEY');
  } catch (err) {
    problems.push(
      `INTAKE_SMOKE_KEY_FILE cannot be read (${(err as Error).message}): point it at a readable file`,
    );
  }
  // Only where a worker runs (`start`, `worker`): an API pod may keep a smaller pool.
  if ((command === 'start' || command === 'worker') && cfg.workerConcurrency >= cfg.dbPoolSize)
    problems.push(
      `INTAKE_WORKER_CONCURRENCY=${cfg.workerConcurrency} is not valid with INTAKE_DB_POOL_SIZE=${cfg.dbPoolSize}: ` +
        'each batch in flight holds a connection, so set it below the pool size (or raise the pool)',
    );
  if (!['SIGUSR1', 'SIGUSR2'].includes(cfg.heapSnapshot.signal))
    problems.push(
      `INTAKE_HEAPSNAPSHOT_SIGNAL=${cfg.heapSnapshot.signal} is not valid: set SIGUSR1 or SIGUSR2`,
    );
  if (needs.piiKey !== 'unused') {
    const keyProblems: string[] = [];
    cfg.piiMasterKey = readPiiMasterKey(env, keyProblems);
    cfg.piiPreviousMasterKey = readPiiMasterKey(env, keyProblems, 'INTAKE_PII_PREVIOUS_MASTER_KEY');
    if (production && cfg.piiMasterKey === undefined && keyProblems.length === 0)
      keyProblems.push(
        'INTAKE_PII_MASTER_KEY (or INTAKE_PII_MASTER_KEY_FILE) is required when NODE_ENV=production',
      );
    if (needs.piiKey === 'required') problems.push(...keyProblems);
    else cfg.piiMasterKeyProblem = keyProblems[0];
  }
  if (cfg.databaseUrl) checkDatabaseTls(cfg.databaseUrl, problems);
  if (needs.queue) readNatsAuth(env, cfg, problems);
  if (needs.queue) readNatsTls(env, cfg, problems);
  if (needs.apiKeys !== 'unused') readApiKeys(env, cfg, problems, int, needs.apiKeys === 'required');
  // In production no keys is refused already (readApiKeys).
  if (needs.apiKeys === 'required' && cfg.apiKeys.length === 0 && !production)
    checkAuthOffHost(env, cfg, problems);
  if (needs.database && production && !cfg.databaseUrl) {
    problems.push(
      'DATABASE_URL is required when NODE_ENV=production: set it to postgres://user:pass@host:5432/db',
    );
  }
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

/** Whether NODE_ENV says production; an unknown value is a problem, judged as production meanwhile. */
function readNodeEnv(raw: string | undefined, problems: string[]): boolean {
  const v = (raw ?? '').trim().toLowerCase();
  if (v === 'production') return true;
  if (v === '' || v === 'development' || v === 'test') return false;
  problems.push(
    `NODE_ENV=${JSON.stringify(raw)} is not valid: set production, development or test (or leave it unset)`,
  );
  return true;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether `host` is a loopback address (a name other than localhost may resolve to anything). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Authentication is off (a command serving the API with no keys, outside production): listen on
 * loopback unless the operator opted in to more, so that nobody on the network can read, export and
 * erase (docs/contract.md §6).
 */
function checkAuthOffHost(env: Env, cfg: Config, problems: string[]): void {
  if (!env.HOST) {
    cfg.host = '127.0.0.1';
    return;
  }
  if (isLoopback(cfg.host) || cfg.allowNoAuthRemote) return;
  problems.push(
    `HOST=${cfg.host} with no INTAKE_API_KEYS would let anyone who reaches it ingest, read, export and erase: ` +
      'create keys with `intake keys create`, listen on 127.0.0.1, or set INTAKE_ALLOW_NO_AUTH_REMOTE=true ' +
      'to serve without authentication there on purpose',
  );
}

/** A PII master key from the environment: 32 bytes in base64, or undefined when not set. */
function readPiiMasterKey(env: Env, problems: string[], name = 'INTAKE_PII_MASTER_KEY'): Buffer | undefined {
  let given: string | undefined;
  try {
    given = readSecret(env, name);
  } catch (err) {
    problems.push(`${name}_FILE cannot be read (${(err as Error).message}): point it at a readable file`);
    return undefined;
  }
  if (given === undefined) return undefined;
  const key = Buffer.from(given, 'base64');
  if (key.length !== 32 || !/^[A-Za-z0-9+/]+={0,2}$/.test(given)) {
    problems.push(`${name} must be 32 random bytes in base64: generate one with \`openssl rand -base64 32\``);
    return undefined;
  }
  return key;
}

/**
 * INTAKE_MAX_CONNECTIONS by default: 90 % of the process's open-file limit less 100 descriptors for
 * everything else (database and NATS connections, files, refused connections being closed), at most
 * 10,000 (memory: see README), at least 64. The limit is the soft RLIMIT_NOFILE from /proc (Linux);
 * elsewhere 1024 is assumed, the usual default.
 */
export function defaultMaxConnections(limits = readLimits()): number {
  const given = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits)?.[1];
  const soft = given === 'unlimited' ? Number.POSITIVE_INFINITY : Number(given ?? 1024);
  return Math.max(64, Math.min(10_000, Math.floor(soft * 0.9) - 100));
}

function readLimits(): string {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return '';
  }
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid-${process.getuid?.() ?? 'unknown'}`; // a container user without a passwd entry
  }
}

function readNatsAuth(env: Env, cfg: Config, problems: string[]): void {
  try {
    const user = readSecret(env, 'NATS_USER');
    const pass = readSecret(env, 'NATS_PASSWORD');
    const token = readSecret(env, 'NATS_TOKEN');
    const credsFile = env.NATS_CREDS_FILE || undefined;
    if ((user === undefined) !== (pass === undefined))
      problems.push('NATS_USER and NATS_PASSWORD go together: set both or neither');
    if ([user, token, credsFile].filter((v) => v !== undefined).length > 1) {
      problems.push(
        'set only one kind of NATS credentials: NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS_FILE',
      );
    }
    if (credsFile !== undefined && !existsSync(credsFile))
      problems.push(`NATS_CREDS_FILE=${credsFile} does not exist: mount the .creds file there`);
    cfg.nats.auth = {
      ...(user === undefined ? {} : { user }),
      ...(pass === undefined ? {} : { pass }),
      ...(token === undefined ? {} : { token }),
      ...(credsFile === undefined ? {} : { credsFile }),
    };
  } catch (err) {
    problems.push(
      `a NATS credentials file cannot be read (${(err as Error).message}): point the *_FILE variable at a readable file`,
    );
  }
}

/**
 * DATABASE_URL's TLS parameters: node-postgres reads sslrootcert/sslcert/sslkey when it first connects
 * and a missing file then fails every query with ENOENT; here it is a configuration error instead.
 */
function checkDatabaseTls(url: string, problems: string[]): void {
  const params = new URL(url).searchParams;
  const mode = params.get('sslmode');
  const modes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];
  if (mode !== null && !modes.includes(mode))
    problems.push(`DATABASE_URL sslmode=${mode} is not valid: set verify-full (with sslrootcert=<CA file>)`);
  for (const name of ['sslrootcert', 'sslcert', 'sslkey']) {
    const file = params.get(name);
    if (file !== null && !readable(file))
      problems.push(`DATABASE_URL ${name}=${file} cannot be read: mount the PEM file there`);
  }
}

/** NATS_TLS_* files (each must be readable now, not at the first connection) and NATS_INBOX_PREFIX. */
function readNatsTls(env: Env, cfg: Config, problems: string[]): void {
  const [caFile, certFile, keyFile] = ['CA', 'CERT', 'KEY'].map((k) => {
    const name = `NATS_TLS_${k}_FILE`;
    const file = env[name] || undefined;
    if (file !== undefined && !readable(file))
      problems.push(`${name}=${file} cannot be read: mount the PEM file there`);
    return file;
  });
  if ((certFile === undefined) !== (keyFile === undefined))
    problems.push('NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together: set both or neither');
  if (caFile || certFile || keyFile) cfg.nats.tls = { caFile, certFile, keyFile };
  const prefix = env.NATS_INBOX_PREFIX || '_INBOX';
  // A subject without wildcards or empty tokens: the client appends `.<id>...` to it.
  if (!/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(prefix))
    problems.push(
      `NATS_INBOX_PREFIX=${JSON.stringify(prefix)} is not valid: set subject tokens without wildcards, e.g. _INBOX.intake-api`,
    );
  cfg.nats.inboxPrefix = prefix;
}

function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function readApiKeys(
  env: Env,
  cfg: Config,
  problems: string[],
  int: (name: string, def: number, min: number, max: number) => number,
  required: boolean,
): void {
  let keysJson: string | undefined;
  try {
    keysJson = readSecret(env, 'INTAKE_API_KEYS');
  } catch (err) {
    if (required)
      problems.push(
        `INTAKE_API_KEYS_FILE cannot be read (${(err as Error).message}): point it at a readable file`,
      );
  }
  const keys = parseApiKeys(keysJson);
  problems.push(...keys.problems);
  cfg.apiKeys = keys.keys;
  const perSecond = int('INTAKE_RATE_LIMIT_PER_SECOND', 0, 0, 10_000_000);
  const burst = int('INTAKE_RATE_LIMIT_BURST', Math.max(1, perSecond * 2), 1, 10_000_000);
  cfg.defaultRateLimit = perSecond > 0 ? { perSecond, burst } : undefined;
  if (required && cfg.production && cfg.apiKeys.length === 0 && !keys.problems.length) {
    problems.push(
      `INTAKE_API_KEYS (or INTAKE_API_KEYS_FILE) is required when NODE_ENV=production (\`intake ${cfg.command}\` authenticates clients): create keys with \`intake keys create\``,
    );
  }
}
