import { resolve } from 'node:path';
import { parseApiKeys } from '../auth/api-keys.ts';
import { type ConfigNeeds, type ConfigRequest, EVERY_NEED } from './needs.ts';
import { ConfigError, type Env } from './readers.ts';
import {
  applyRules,
  natsClientCertificate,
  natsCredentials,
  rateLimit,
  requireApiKeys,
  requirePiiMasterKey,
} from './rules.ts';
import { SETTINGS, type SettingName, type SettingValue } from './settings.ts';
import { readTracing } from './tracing.ts';
import type { Config } from './types.ts';

/** Reads one setting with its reader from the table; a problem goes to `problems`. */
type Get = <K extends SettingName>(name: K, problems?: string[]) => SettingValue<K>;

/**
 * Reads and checks the environment for a command's declared needs (by default everything, as `intake`
 * alone runs API and worker in one process). Every problem is collected, and all of them are thrown
 * at once as one ConfigError (exit 78), each naming the variable and saying what to set.
 */
export function loadConfig(
  env: Env = process.env,
  command: ConfigRequest = { name: '', needs: EVERY_NEED },
): Config {
  const needs: ConfigNeeds = command.needs ?? {};
  const problems: string[] = [];
  const get: Get = (name, sink = problems) =>
    SETTINGS[name].reader.read(env, name, sink) as SettingValue<typeof name>;

  const cfg: Config = {
    command: command.name,
    production: get('NODE_ENV'),
    host: get('HOST'),
    allowNoAuthRemote: get('INTAKE_ALLOW_NO_AUTH_REMOTE'),
    port: get('PORT'),
    adminPort: get('INTAKE_ADMIN_PORT'),
    databaseUrl: get('DATABASE_URL'),
    dataDir: resolve(get('INTAKE_DATA_DIR')),
    natsUrl: undefined,
    nats: {
      stream: get('NATS_STREAM'),
      subject: get('NATS_SUBJECT'),
      consumer: get('NATS_CONSUMER'),
      replicas: get('NATS_REPLICAS'),
      maxAgeHours: get('NATS_MAX_AGE_HOURS'),
      maxBytes: get('NATS_MAX_BYTES'),
      maxMsgs: get('NATS_MAX_MSGS'),
      trimAtPercent: get('NATS_TRIM_AT_PERCENT'),
      duplicateWindowS: get('NATS_DUPLICATE_WINDOW_S'),
      ackWaitMs: get('NATS_ACK_WAIT_MS'),
      idempotencyTtlHours: get('NATS_IDEMPOTENCY_TTL_HOURS'),
      idempotencyMaxBytes: get('NATS_IDEMPOTENCY_MAX_BYTES'),
      publishConcurrency: get('NATS_PUBLISH_CONCURRENCY'),
      publishLingerMs: get('NATS_PUBLISH_LINGER_MS'),
      auth: {},
      tls: undefined,
      inboxPrefix: '_INBOX',
    },
    logLevel: get('LOG_LEVEL'),
    accessLog: get('INTAKE_ACCESS_LOG'),
    bodyLimit: get('INTAKE_BODY_LIMIT_BYTES'),
    dbPoolSize: get('INTAKE_DB_POOL_SIZE'),
    enqueueLingerMs: get('INTAKE_ENQUEUE_LINGER_MS'),
    enqueueMaxBatch: get('INTAKE_ENQUEUE_MAX_BATCH'),
    publishTimeoutMs: get('INTAKE_PUBLISH_TIMEOUT_MS'),
    maxPendingPublishes: get('INTAKE_MAX_PENDING_PUBLISHES'),
    queueMaxMessages: get('INTAKE_QUEUE_MAX_MESSAGES'),
    idempotencyTtlHours: get('INTAKE_IDEMPOTENCY_TTL_HOURS'),
    queueLeaseMs: get('INTAKE_QUEUE_LEASE_MS'),
    apiWorkers: get('INTAKE_API_WORKERS'),
    workerBatchSize: get('INTAKE_WORKER_BATCH_SIZE'),
    workerMaxWaitMs: get('INTAKE_WORKER_MAX_WAIT_MS'),
    workerConcurrency: get('INTAKE_WORKER_CONCURRENCY'),
    workerMaxAttempts: get('INTAKE_WORKER_MAX_ATTEMPTS'),
    retentionDays: get('INTAKE_RETENTION_DAYS'),
    deadLetterRetentionDays: 0, // rules.ts: bounded by, and by default, the message retention
    shutdownDelayMs: get('INTAKE_SHUTDOWN_DELAY_MS'),
    shutdownTimeoutMs: get('INTAKE_SHUTDOWN_TIMEOUT_MS'),
    requestTimeoutMs: get('INTAKE_REQUEST_TIMEOUT_MS'),
    headersTimeoutMs: get('INTAKE_HEADERS_TIMEOUT_MS'),
    lingeringTimeMs: get('INTAKE_LINGERING_TIME_MS'),
    lingeringTimeoutMs: get('INTAKE_LINGERING_TIMEOUT_MS'),
    maxConnections: get('INTAKE_MAX_CONNECTIONS'),
    piiMessageFields: get('INTAKE_PII_MESSAGE_FIELDS'),
    apiKeys: [],
    defaultRateLimit: undefined,
    migrateOnStart: get('INTAKE_MIGRATE_ON_START') ?? needs.migrateOnStart === true,
    piiMasterKey: undefined,
    piiMasterKeyProblem: undefined,
    piiPreviousMasterKey: undefined,
    dataKeyRefreshS: get('INTAKE_DATA_KEY_REFRESH_SECONDS'),
    dataKeyMaxEncryptions: get('INTAKE_DATA_KEY_MAX_ENCRYPTIONS'),
    actor: get('INTAKE_ACTOR'),
    heapSnapshot: { signal: get('INTAKE_HEAPSNAPSHOT_SIGNAL'), dir: '' }, // dir: rules.ts
    smoke: { url: get('INTAKE_SMOKE_URL'), key: get('INTAKE_SMOKE_KEY') }, // url's default: rules.ts
    secretFiles: secretFiles(env, needs),
    tracing: { export: false }, // below
  };
  const given = {
    host: Boolean(env.HOST),
    deadLetterRetentionDays: get('INTAKE_DEAD_LETTER_RETENTION_DAYS'),
    heapSnapshotDir: get('INTAKE_HEAPSNAPSHOT_DIR'),
  };
  // Settings only some commands read (their `need` in settings.ts): the others keep the defaults above.
  if (needed(needs, 'queue')) readQueue(cfg, get, problems);
  if (needed(needs, 'piiKey')) readPiiKeys(cfg, get, needs, problems);
  if (needed(needs, 'apiKeys')) readApiKeys(cfg, get, needs, problems);
  const tracing = readTracing(env);
  cfg.tracing = tracing.tracing;
  problems.push(...tracing.problems);
  applyRules(cfg, given, needs, problems);
  if (problems.length) throw new ConfigError(problems);
  return cfg;
}

/** Whether a command with `needs` reads the settings gated by `need`. */
function needed(needs: ConfigNeeds, need: 'queue' | 'apiKeys' | 'piiKey'): boolean {
  const v = needs[need];
  return v === true || v === 'required' || v === 'read';
}

/** The NATS URL, credentials and TLS files, checked now rather than at the first connection. */
function readQueue(cfg: Config, get: Get, problems: string[]): void {
  cfg.natsUrl = get('NATS_URL');
  const [user, pass, token, credsFile] = [
    get('NATS_USER'),
    get('NATS_PASSWORD'),
    get('NATS_TOKEN'),
    get('NATS_CREDS_FILE'),
  ];
  cfg.nats.auth = {
    ...(user === undefined ? {} : { user }),
    ...(pass === undefined ? {} : { pass }),
    ...(token === undefined ? {} : { token }),
    ...(credsFile === undefined ? {} : { credsFile }),
  };
  natsCredentials(cfg.nats.auth, problems);
  const [caFile, certFile, keyFile] = [
    get('NATS_TLS_CA_FILE'),
    get('NATS_TLS_CERT_FILE'),
    get('NATS_TLS_KEY_FILE'),
  ];
  if (caFile || certFile || keyFile) cfg.nats.tls = { caFile, certFile, keyFile };
  natsClientCertificate(cfg.nats.tls, problems);
  cfg.nats.inboxPrefix = get('NATS_INBOX_PREFIX');
}

/** The PII master keys: a problem stops a command that requires them, and `doctor` reports it. */
function readPiiKeys(cfg: Config, get: Get, needs: ConfigNeeds, problems: string[]): void {
  const keyProblems: string[] = [];
  cfg.piiMasterKey = get('INTAKE_PII_MASTER_KEY', keyProblems);
  cfg.piiPreviousMasterKey = get('INTAKE_PII_PREVIOUS_MASTER_KEY', keyProblems);
  requirePiiMasterKey(cfg, keyProblems);
  if (needs.piiKey === 'required') problems.push(...keyProblems);
  else cfg.piiMasterKeyProblem = keyProblems[0];
}

/** The API keys and the default rate limit per key. */
function readApiKeys(cfg: Config, get: Get, needs: ConfigNeeds, problems: string[]): void {
  const fileProblems: string[] = [];
  const keys = parseApiKeys(get('INTAKE_API_KEYS', fileProblems));
  // `doctor` reads the keys only from a file it can read: its secrets check reports one that is not mounted.
  if (needs.apiKeys === 'required') problems.push(...fileProblems);
  problems.push(...keys.problems);
  cfg.apiKeys = keys.keys;
  cfg.defaultRateLimit = rateLimit(get('INTAKE_RATE_LIMIT_PER_SECOND'), get('INTAKE_RATE_LIMIT_BURST'));
  if (needs.apiKeys === 'required' && !keys.problems.length) requireApiKeys(cfg, problems);
}

/** The mounted files this command reads (secrets read from `NAME_FILE`, and file settings). */
function secretFiles(env: Env, needs: ConfigNeeds): Record<string, string> {
  const names = Object.entries(SETTINGS).flatMap(([name, s]) => {
    if (!('secret' in s) || ('need' in s && !needed(needs, s.need))) return [];
    return [s.secret === 'path' ? name : `${name}_FILE`];
  });
  return Object.fromEntries(names.flatMap((name) => (env[name] ? [[name, env[name]]] : [])));
}
