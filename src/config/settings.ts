import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import {
  bool,
  bytes,
  int,
  list,
  logLevel,
  matching,
  mountedFile,
  notValid,
  oneOf,
  optionalInt,
  optionalText,
  type Reader,
  readable,
  secret,
  text,
  urls,
  withDefault,
} from './readers.ts';

/**
 * Every setting intake reads, declared once: its reader (type, default, bounds), one line of docs, and
 * whether it is a secret. README.md#configuration and docs/production.md#settings are generated from
 * this table (scripts/gen-settings-docs.ts; test/config/docs.test.ts fails when they drift), load.ts
 * turns the values into a Config, and rules.ts holds what involves several settings.
 */
export interface Setting<T = unknown> {
  reader: Reader<T>;
  /** One line for the README table: what it does, and what to know before changing it. */
  doc: string;
  /** The default as the docs show it, when the reader's own does not tell it (computed, taken from another setting). */
  default?: string;
  /**
   * `value`: a secret, also read from the file `NAME_FILE` names (mounted secrets); `path`: the
   * value is the path of a mounted file. `doctor` checks that either file is mounted and not empty.
   */
  secret?: 'value' | 'path';
  /** Read only by the commands that declare this need (needs.ts); the others keep the default. */
  need?: 'queue' | 'apiKeys' | 'piiKey';
  /** A row of docs/production.md#settings too: `true` with the same line, or a line of its own there. */
  production?: true | string;
}

/** Settings by environment variable. */
export type SettingTable = Record<string, Setting>;

/** A part of the table, shown as one table in the docs. */
export interface SettingGroup {
  title: string;
  /** Where its table is: the README, or docs/production.md (the README then points there with `summary`). */
  docs: 'readme' | 'production';
  summary?: string;
  settings: SettingTable;
}

/** Any case of `production` is production; an unknown value is a problem, judged as production meanwhile. */
const nodeEnv: Reader<boolean> = {
  allowed: '`production`, `development`, `test`',
  read(env, name, problems) {
    const raw = env[name];
    const v = (raw ?? '').trim().toLowerCase();
    if (v === 'production') return true;
    if (v === '' || v === 'development' || v === 'test') return false;
    problems.push(notValid(name, raw ?? '', 'production, development or test (or leave it unset)'));
    return true;
  },
};

/**
 * DATABASE_URL, with its TLS parameters checked now: node-postgres reads sslrootcert/sslcert/sslkey
 * when it first connects, and a missing file then fails every query with ENOENT.
 */
function postgresUrl(): Reader<string | undefined> {
  const url = urls(['postgres:', 'postgresql:'], 'postgres://host:port/db');
  return {
    allowed: '`postgres://` URL',
    read(env, name, problems) {
      const v = url.read(env, name, problems);
      if (v === undefined) return v;
      const params = new URL(v).searchParams;
      const mode = params.get('sslmode');
      const modes = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];
      if (mode !== null && !modes.includes(mode))
        problems.push(`${name} sslmode=${mode} is not valid: set verify-full (with sslrootcert=<CA file>)`);
      for (const p of ['sslrootcert', 'sslcert', 'sslkey']) {
        const file = params.get(p);
        if (file !== null && !readable(file))
          problems.push(`${name} ${p}=${file} cannot be read: mount the PEM file there`);
      }
      return v;
    },
  };
}

/** A PII master key: 32 bytes in base64, or undefined when not set. */
function masterKey(): Reader<Buffer | undefined> {
  const raw = secret();
  return {
    allowed: '32 bytes, base64',
    read(env, name, problems) {
      const given = raw.read(env, name, problems);
      if (given === undefined) return undefined;
      const key = Buffer.from(given, 'base64');
      if (key.length === 32 && /^[A-Za-z0-9+/]+={0,2}$/.test(given)) return key;
      problems.push(
        `${name} must be 32 random bytes in base64: generate one with \`openssl rand -base64 32\``,
      );
      return undefined;
    },
  };
}

const listening = {
  PORT: { reader: int(8080, 0, 65535), doc: 'port of the HTTP server' },
  HOST: {
    reader: text('0.0.0.0', 'an address'),
    doc:
      'listen address; with no API keys (authentication off) it defaults to `127.0.0.1`, and an address ' +
      'that is not loopback is refused unless `INTAKE_ALLOW_NO_AUTH_REMOTE=true`',
  },
  INTAKE_ALLOW_NO_AUTH_REMOTE: {
    reader: bool(false),
    doc:
      '`true`: serve without API keys on a `HOST` that is not loopback, on purpose (outside production ' +
      'only; anyone who reaches it can read, export and erase)',
  },
  INTAKE_ADMIN_PORT: {
    reader: optionalInt(1, 65535),
    doc:
      'serve the privacy and admin routes (`/v1/subjects/*`, `/v1/messages/{id}/revealed`, ' +
      '`/v1/dead-letters*`) on this port of `HOST` only; on `PORT` they answer 404 (Kubernetes: 8082, not ' +
      'behind the Ingress)',
  },
  INTAKE_BODY_LIMIT_BYTES: {
    reader: int(1024 * 1024, 1024, 64 * 1024 * 1024),
    doc: 'larger bodies get `413`',
  },
  INTAKE_REQUEST_TIMEOUT_MS: {
    reader: int(10_000, 100, 600_000),
    doc: 'slow clients: a request not received by then gets `408`',
  },
  INTAKE_HEADERS_TIMEOUT_MS: {
    reader: int(5_000, 100, 600_000),
    doc: 'slow clients: request headers not received by then get `408`',
  },
  INTAKE_LINGERING_TIME_MS: {
    reader: int(30_000, 100, 600_000),
    doc:
      'after a refusal sent before the body was read, how long in total intake reads away what the ' +
      'client still sends before closing, so the client reads the refusal instead of a reset (nginx’s ' +
      'lingering close)',
  },
  INTAKE_LINGERING_TIMEOUT_MS: {
    reader: int(5_000, 100, 600_000),
    doc: 'the same, at most this long between two reads',
  },
  INTAKE_MAX_CONNECTIONS: {
    reader: withDefault(optionalInt(1, 1_000_000), () => defaultMaxConnections()),
    default: '90 % of the open-file limit less 100, at most `10000`',
    doc:
      'HTTP connections one process holds open (probes included); past it a new connection gets `503 ' +
      'SERVER_BUSY` with `Retry-After: 1` and is closed, unread (`intake_http_connections_refused_total`); ' +
      'each open connection costs ~5 KiB of heap, plus its body while it arrives',
    production:
      'connections per API process; size it to the pod: ~5 KiB of heap per open connection plus the ' +
      'bodies being received (at most `INTAKE_BODY_LIMIT_BYTES` each). Past it: `503 SERVER_BUSY`, ' +
      'counted in `intake_http_connections_refused_total` against `intake_http_connections_limit`',
  },
  INTAKE_API_WORKERS: {
    reader: int(1, 1, 64),
    doc: '`intake api` only: processes serving the port (node:cluster); one per core of the pod',
  },
  INTAKE_SHUTDOWN_DELAY_MS: {
    reader: int(0, 0, 300_000),
    doc: 'keep serving this long after readiness turns false (when there is no preStop hook)',
  },
  INTAKE_SHUTDOWN_TIMEOUT_MS: {
    reader: int(25_000, 100, 600_000),
    doc: 'drain deadline: in-flight work is aborted after this',
  },
} satisfies SettingTable;

const database = {
  NODE_ENV: {
    reader: nodeEnv,
    doc:
      '`production` (any case) makes `DATABASE_URL` mandatory, and each secret for the commands that use ' +
      'it ([docs/cli.md](docs/cli.md#what-each-command-reads)); any other value but `development` and ' +
      '`test` is refused',
  },
  DATABASE_URL: {
    reader: postgresUrl(),
    secret: 'value',
    doc:
      'PostgreSQL; unset → embedded PostgreSQL under `INTAKE_DATA_DIR`, with no TCP port: reachable only ' +
      'through a Unix socket inside that directory, by the same OS user (peer authentication). TLS: ' +
      '`?sslmode=verify-full&sslrootcert=/path/ca.crt` verifies the server’s certificate and host name ' +
      '(`intake doctor` reports it; a missing file is a start-up error)',
  },
  INTAKE_DATA_DIR: {
    reader: text('./.intake', 'a directory'),
    doc:
      'embedded cluster and generated development secrets; made private to the OS user at start (0700; ' +
      '0710 for the `postgres` group when run as root), refused when shared (e.g. `/tmp` itself)',
  },
  INTAKE_DB_POOL_SIZE: { reader: int(10, 2, 200), doc: 'connections per process' },
  INTAKE_MIGRATE_ON_START: {
    reader: optionalBool(),
    default: '`true` for `start`, `false` for `api` and `worker`',
    doc: 'migrate before serving; `api` and `worker` otherwise refuse a schema older than their build (run `intake migrate`)',
  },
  INTAKE_RETENTION_DAYS: {
    reader: int(30, 1, 3650),
    doc:
      'daily partitions and data keys older than this are dropped; `intake migrate` records it in the ' +
      'database, where the partition functions refuse to drop anything newer, whoever asks',
  },
  INTAKE_DEAD_LETTER_RETENTION_DAYS: {
    // Read as given: its bounds are the message retention's (rules.ts).
    reader: { allowed: '1–`INTAKE_RETENTION_DAYS`', read: (env, name) => env[name] },
    default: '`INTAKE_RETENTION_DAYS`',
    doc:
      'dead letters that failed longer ago are deleted (hourly, by the API); at most ' +
      '`INTAKE_RETENTION_DAYS`, past which they could be neither stored nor read',
  },
} satisfies SettingTable;

const auth = {
  INTAKE_API_KEYS: {
    reader: secret('JSON array of `{name, hash, scopes, senders?, rateLimit?: {perSecond, burst}}`'),
    secret: 'value',
    need: 'apiKeys',
    default: '— (auth off)',
    doc: 'the API keys, as hashes (`intake keys create` prints an entry)',
  },
  INTAKE_RATE_LIMIT_PER_SECOND: {
    reader: int(0, 0, 10_000_000),
    need: 'apiKeys',
    default: '`0` (off)',
    doc:
      'default token bucket per key (a key’s own `rateLimit` wins). A bucket is per pod: the ' +
      '`INTAKE_API_WORKERS` processes of one pod share it (their supervisor holds it), so across the ' +
      'deployment a key may send up to the number of API replicas × its rate',
  },
  INTAKE_RATE_LIMIT_BURST: {
    reader: optionalInt(1, 10_000_000),
    need: 'apiKeys',
    default: '2 × the rate',
    doc: 'the bucket’s size',
  },
} satisfies SettingTable;

const personalData = {
  INTAKE_PII_MASTER_KEY: {
    reader: masterKey(),
    secret: 'value',
    need: 'piiKey',
    default: 'generated in development',
    doc: 'wraps the data keys and the pseudonym key (docs/privacy.md)',
  },
  INTAKE_PII_PREVIOUS_MASTER_KEY: {
    reader: masterKey(),
    secret: 'value',
    need: 'piiKey',
    doc:
      'during a master key rotation only: the key being retired, used to unwrap until `intake keys ' +
      'rotate-master` ran ([runbook](docs/runbooks.md#rotating-the-pii-master-key))',
  },
  INTAKE_PII_MESSAGE_FIELDS: {
    reader: list(),
    doc: 'top-level `message` keys that are personal data too (encrypted, shown as `"redacted"`)',
  },
  INTAKE_DATA_KEY_REFRESH_SECONDS: {
    reader: int(10, 1, 3600),
    doc:
      'how often an API process looks for a newer data key: `intake keys rotate` reaches every running ' +
      'process within this time',
  },
  INTAKE_DATA_KEY_MAX_ENCRYPTIONS: {
    reader: int(2 ** 24, 64, 2 ** 30),
    doc:
      'encryptions one process makes under one data key before it starts a new one; keep processes × this ' +
      'far under 2³² (AES-GCM random IVs, docs/privacy.md)',
  },
} satisfies SettingTable;

const queue = {
  NATS_URL: {
    reader: urls(['nats:', 'tls:', 'ws:', 'wss:'], 'nats://host:port'),
    secret: 'value',
    need: 'queue',
    doc: 'NATS servers (comma-separated); unset → the Postgres-backed queue',
    production: 'comma-separated servers; list all nodes so a client can start while one is down',
  },
  INTAKE_PUBLISH_TIMEOUT_MS: {
    reader: int(2000, 100, 60_000),
    doc: 'queue acknowledgement deadline before `503`',
    production: 'no ack by then: `503` (`ACCEPTANCE_UNKNOWN` if the envelope was sent)',
  },
  INTAKE_MAX_PENDING_PUBLISHES: {
    reader: int(20_000, 1, 1_000_000),
    doc: 'beyond this many waiting publishes, `503` at once (bounded memory)',
    production: true,
  },
  INTAKE_ENQUEUE_LINGER_MS: {
    reader: int(2, 0, 1000),
    doc: 'how long a publish waits to share a queue commit with others (group commit)',
  },
  INTAKE_ENQUEUE_MAX_BATCH: {
    reader: int(500, 1, 10_000),
    doc: 'most messages in one queue commit',
    production: 'most messages in one envelope',
  },
  INTAKE_QUEUE_MAX_MESSAGES: {
    reader: int(1_000_000, 1, 1_000_000_000),
    doc:
      'Postgres queue: beyond this many waiting messages, `503 QUEUE_FULL` (not accepted). Each API ' +
      'process compares it with a count it takes once a second, so the table can overshoot it by what the ' +
      'API processes accept between two counts (about a second of ingest)',
  },
  INTAKE_QUEUE_LEASE_MS: {
    reader: int(30_000, 1000, 3_600_000),
    doc: 'Postgres queue: a batch a dead worker took comes back to another after this (NATS: `NATS_ACK_WAIT_MS`)',
  },
  INTAKE_IDEMPOTENCY_TTL_HOURS: {
    reader: int(24, 1, 24 * 90),
    doc:
      'Postgres queue: how long an `Idempotency-Key` is remembered (rows older than this are pruned ' +
      'hourly; NATS: `NATS_IDEMPOTENCY_TTL_HOURS`)',
  },
} satisfies SettingTable;

const worker = {
  INTAKE_WORKER_BATCH_SIZE: {
    reader: int(1000, 1, 10_000),
    doc: 'most messages in a worker batch',
    production: 'a worker batch: this many messages or `INTAKE_WORKER_MAX_WAIT_MS`, whichever comes first',
  },
  INTAKE_WORKER_MAX_WAIT_MS: { reader: int(50, 1, 60_000), doc: 'longest a worker waits to fill a batch' },
  INTAKE_WORKER_CONCURRENCY: {
    reader: int(2, 1, 32),
    doc: 'batches a worker stores at once, each in its own transaction (below `INTAKE_DB_POOL_SIZE`)',
    production:
      'batches stored at once per worker: one commits while the next is copied (drain +30 % on 2 cores); ' +
      'more helps only with cores to spare',
  },
  INTAKE_WORKER_MAX_ATTEMPTS: {
    reader: int(5, 1, 100),
    doc: 'deliveries before a message goes to `dead_letters`',
    production: 'failed stores before `dead_letters`; the consumer’s `max_deliver` is this + 10',
  },
} satisfies SettingTable;

const operations = {
  LOG_LEVEL: {
    reader: logLevel(),
    doc:
      'pino level; logs are JSON lines on stdout (stderr for one-shot commands), an access line per ' +
      'request (see `INTAKE_ACCESS_LOG`), no PII',
  },
  INTAKE_ACCESS_LOG: {
    reader: oneOf(['all', 'errors', 'off'], 'all'),
    doc:
      'which requests get an access line (`errors`: status ≥ 400); at 100k req/s the line costs about a ' +
      'tenth of the API’s CPU (docs/capacity-plan.md), and metrics count every request either way',
  },
  INTAKE_ACTOR: {
    reader: withDefault(optionalText(), osUser),
    default: 'the OS user',
    doc: 'who an operator command (`pii`, `keys rotate`, `dead-letters`) is recorded as in the audit log',
  },
  INTAKE_SMOKE_URL: {
    reader: matching(/^https?:\/\//, '', 'http(s)://host:port'),
    default: '`http://127.0.0.1:<PORT>`',
    doc: 'where `intake smoke` sends its canary',
  },
  INTAKE_SMOKE_KEY: { reader: secret(), secret: 'value', doc: 'the API key `intake smoke` sends' },
  INTAKE_HEAPSNAPSHOT_SIGNAL: {
    reader: oneOf(['SIGUSR1', 'SIGUSR2'], 'SIGUSR2'),
    doc: 'the signal that writes a heap snapshot (docs/memory-leaks.md)',
  },
  INTAKE_HEAPSNAPSHOT_DIR: {
    reader: optionalText(),
    default: '`<data dir>/heapsnapshots`',
    doc: 'where heap snapshots are written',
  },
} satisfies SettingTable;

/** An OTLP/HTTP protocol; `grpc` is refused with what to set instead. Unset: the other variable's, or the default. */
function otlpProtocol(): Reader<'http/protobuf' | 'http/json' | undefined> {
  return {
    allowed: '`http/protobuf`, `http/json`',
    read(env, name, problems) {
      const raw = env[name]?.trim();
      if (!raw) return undefined;
      if (raw === 'http/protobuf' || raw === 'http/json') return raw;
      problems.push(
        raw === 'grpc'
          ? `${name}=grpc is not supported: intake exports over OTLP/HTTP only; set http/protobuf (the default) or http/json, and point the endpoint at the collector's HTTP port (4318)`
          : notValid(name, raw, '`http/protobuf` (the default) or `http/json`'),
      );
      return undefined;
    },
  };
}

/**
 * An OTLP/HTTP URL. A refused value is echoed with its user and password (before an `@`) and its query
 * hidden: an endpoint may carry the collector's credentials, and the problem is printed on stderr.
 */
function otlpEndpoint(): Reader<string> {
  const hint = 'an `http://` or `https://` URL';
  return {
    allowed: hint,
    read(env, name, problems) {
      const raw = env[name];
      if (raw === undefined || raw === '') return '';
      if (/^https?:\/\/[^/]/.test(raw)) return raw;
      const shown = raw.replace(/^([^/?#@]*\/\/)?[^/?#]*@/, '$1…@').replace(/\?.*$/s, '?…');
      problems.push(notValid(name, shown, hint));
      return '';
    },
  };
}

/** A boolean as the OpenTelemetry specification reads it: `true` in any case, anything else false. */
function otelBool(): Reader<boolean> {
  return {
    default: 'false',
    allowed: '`true`, `false`',
    read: (env, name) => env[name]?.trim().toLowerCase() === 'true',
  };
}

export const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;

/**
 * The standard OpenTelemetry variables intake reads (docs/tracing.md#export). Their problems count
 * only while export is on (config/tracing.ts): a `grpc` meant for other services of a shared
 * environment does not stop an intake that exports nothing.
 */
const tracing = {
  OTEL_EXPORTER_OTLP_ENDPOINT: {
    reader: otlpEndpoint(),
    doc: 'the collector’s OTLP/HTTP base URL (e.g. `http://collector:4318`); set, spans are exported to it + `/v1/traces`; unset, tracing costs nothing',
  },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {
    reader: otlpEndpoint(),
    doc: 'the full URL spans are posted to, instead of the one above',
  },
  OTEL_EXPORTER_OTLP_PROTOCOL: {
    reader: otlpProtocol(),
    default: '`http/protobuf`',
    doc: 'how spans are encoded; `grpc` is refused at start',
  },
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: {
    reader: otlpProtocol(),
    default: '`OTEL_EXPORTER_OTLP_PROTOCOL`',
    doc: 'the same, for traces only',
  },
  OTEL_EXPORTER_OTLP_HEADERS: {
    reader: { ...optionalText(), allowed: '`key=value` pairs, comma-separated' },
    doc: 'headers of every export (e.g. the collector’s API key); read by the exporter, as are `_TIMEOUT`, `_COMPRESSION` and the certificate variables',
  },
  OTEL_EXPORTER_OTLP_TIMEOUT: {
    reader: int(10_000, 1, 600_000),
    doc: 'longest one export waits for the collector, in ms',
  },
  OTEL_SDK_DISABLED: { reader: otelBool(), doc: '`true` turns export off whatever else is set' },
  OTEL_TRACES_EXPORTER: {
    reader: oneOf(['otlp', 'none'], 'otlp'),
    doc: '`none` turns export off',
  },
  OTEL_TRACES_SAMPLER: {
    reader: oneOf(SAMPLERS, 'parentbased_always_on'),
    doc: 'which traces are exported; `parentbased_*` follow the caller’s `sampled` flag',
  },
  OTEL_TRACES_SAMPLER_ARG: {
    reader: { ...optionalText(), allowed: '0–1' },
    default: '`1`',
    doc: 'the share of traces the `traceidratio` samplers keep',
  },
  OTEL_SERVICE_NAME: { reader: text('intake', 'text'), doc: '`service.name` of the exported spans' },
  OTEL_RESOURCE_ATTRIBUTES: {
    reader: { ...optionalText(), allowed: '`key=value` pairs, comma-separated' },
    doc: 'more attributes of the resource (e.g. `deployment.environment.name=prod`)',
  },
  OTEL_BSP_MAX_QUEUE_SIZE: {
    reader: int(2048, 1, 1_000_000),
    doc: 'spans held for export; beyond it (a collector down or slow) new spans are dropped, so memory stays bounded',
  },
  OTEL_BSP_SCHEDULE_DELAY: {
    reader: int(5000, 1, 600_000),
    doc: 'longest a span waits before it is exported, in ms',
  },
} satisfies SettingTable;

const nats = {
  NATS_STREAM: { reader: text('INTAKE', 'a stream name'), doc: 'the stream', production: true },
  NATS_SUBJECT: {
    reader: text('intake.messages', 'a subject'),
    doc: 'the stream’s subject',
    production: true,
  },
  NATS_CONSUMER: {
    reader: text('intake-writer', 'a consumer name'),
    doc: 'the workers’ durable pull consumer',
  },
  NATS_REPLICAS: {
    reader: int(1, 1, 5),
    doc: 'stream (and bucket) replicas: 3 in a cluster; `202` waits for a quorum',
  },
  NATS_MAX_AGE_HOURS: {
    reader: int(168, 1, 24 * 365),
    doc: 'how long messages stay on the stream, acknowledged or not (unless trimmed)',
  },
  NATS_MAX_BYTES: {
    reader: bytes(0),
    default: '`0` (none)',
    doc:
      'the stream’s `max_bytes`; full → `503 QUEUE_FULL` (with `discard: new`, unprocessed messages are ' +
      'never deleted to make room). Set it in production (see *Sizing the stream*); a limit reserves that ' +
      'much of the server’s store',
  },
  NATS_MAX_MSGS: {
    reader: int(0, 0, Number.MAX_SAFE_INTEGER),
    default: '`0` (none)',
    doc: 'the stream’s `max_msgs`, in stream messages (envelopes of 1–500 messages)',
  },
  NATS_TRIM_AT_PERCENT: {
    reader: int(50, 1, 100),
    doc:
      'at this share of a limit, workers delete the oldest acknowledged messages, down to half of it ' +
      '(100: only once full)',
  },
  NATS_DUPLICATE_WINDOW_S: {
    reader: int(120, 1, 7 * 24 * 3600),
    doc: 'server-side dedupe of a re-published envelope',
  },
  NATS_ACK_WAIT_MS: {
    reader: int(30_000, 1000, 3_600_000),
    doc: 'a batch not acknowledged by then (worker died) is redelivered',
  },
  NATS_IDEMPOTENCY_TTL_HOURS: {
    reader: int(24, 1, 24 * 90),
    doc: 'how long an Idempotency-Key is remembered (the max age of the KV bucket `<stream>-idempotency`)',
  },
  NATS_IDEMPOTENCY_MAX_BYTES: {
    reader: bytes(0),
    default: '`0` (none)',
    doc:
      'the KV bucket’s `max_bytes` (`discard: new`): full → a request with a new Idempotency-Key gets ' +
      '`503`, a remembered key is never evicted early. ~290 bytes per key, ~510 with an IP; size it ' +
      'for keyed requests in `NATS_IDEMPOTENCY_TTL_HOURS` (see *Sizing the idempotency bucket*)',
  },
  NATS_PUBLISH_CONCURRENCY: {
    reader: int(2, 1, 256),
    doc:
      'envelopes awaiting their ack at once, per API process; requests arriving meanwhile join the next ' +
      'group (scripts/bench-publish.ts measured 2 ahead of 4 and 8)',
  },
  NATS_PUBLISH_LINGER_MS: {
    reader: int(0, 0, 1000),
    doc: 'extra wait for a group to fill (0: group only while every publish slot awaits its ack)',
  },
  NATS_USER: {
    reader: secret(),
    secret: 'value',
    need: 'queue',
    doc: 'user name, with `NATS_PASSWORD` (one kind of credentials at most; none for an open server)',
  },
  NATS_PASSWORD: { reader: secret(), secret: 'value', need: 'queue', doc: 'password of `NATS_USER`' },
  NATS_TOKEN: { reader: secret(), secret: 'value', need: 'queue', doc: 'a token, instead of a user' },
  NATS_CREDS_FILE: {
    reader: mountedFile('the .creds file', 'exists'),
    secret: 'path',
    need: 'queue',
    doc: 'a decentralised-auth `.creds` file (JWT and NKey seed), instead of a user or token',
  },
  NATS_TLS_CA_FILE: {
    reader: mountedFile('the PEM file', 'readable'),
    secret: 'path',
    need: 'queue',
    doc:
      'PEM CA the server’s certificate must chain to: set, intake refuses a server without TLS, with ' +
      'another CA’s certificate or one for another host name (use host names in `NATS_URL`, not IPs)',
  },
  NATS_TLS_CERT_FILE: {
    reader: mountedFile('the PEM file', 'readable'),
    secret: 'path',
    need: 'queue',
    doc: 'a client certificate, with `NATS_TLS_KEY_FILE`, for servers that verify clients (`verify: true`)',
  },
  NATS_TLS_KEY_FILE: {
    reader: mountedFile('the PEM file', 'readable'),
    secret: 'path',
    need: 'queue',
    doc: 'the client certificate’s key',
  },
  NATS_INBOX_PREFIX: {
    // A subject without wildcards or empty tokens: the client appends `.<id>...` to it.
    reader: matching(
      /^[^\s.*>]+(\.[^\s.*>]+)*$/,
      '_INBOX',
      'subject tokens without wildcards, e.g. _INBOX.intake-api',
    ),
    need: 'queue',
    doc:
      'subject prefix of this process’s replies and pulled messages; with per-user permissions, one per ' +
      'user (`_INBOX.intake-api`), so no user reads another’s replies',
  },
} satisfies SettingTable;

/** The groups, in the order the docs show them. */
export const GROUPS: SettingGroup[] = [
  { title: 'Listening and HTTP limits', docs: 'readme', settings: listening },
  { title: 'Environment and database', docs: 'readme', settings: database },
  { title: 'API keys and rate limits', docs: 'readme', settings: auth },
  { title: 'Personal data', docs: 'readme', settings: personalData },
  { title: 'Queue', docs: 'readme', settings: queue },
  {
    title: 'NATS JetStream',
    docs: 'production',
    summary: 'The stream, consumer, limits, credentials and TLS of the NATS queue (`NATS_*`)',
    settings: nats,
  },
  { title: 'Worker', docs: 'readme', settings: worker },
  { title: 'Logs and operator commands', docs: 'readme', settings: operations },
  { title: 'Tracing (OpenTelemetry)', docs: 'readme', settings: tracing },
];

/** Every setting by its environment variable. */
export const SETTINGS = {
  ...listening,
  ...database,
  ...auth,
  ...personalData,
  ...queue,
  ...nats,
  ...worker,
  ...operations,
  ...tracing,
};

/** The name of a setting: its environment variable. */
export type SettingName = keyof typeof SETTINGS;
/** The value a setting's reader returns. */
export type SettingValue<K extends SettingName> = ReturnType<(typeof SETTINGS)[K]['reader']['read']>;

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

/** `true` or `false`, or undefined when unset (the default is the command's: needs.ts). */
function optionalBool(): Reader<boolean | undefined> {
  const r = oneOf(['true', 'false'], 'false');
  return {
    allowed: r.allowed,
    read: (env, name, problems) => (env[name] ? r.read(env, name, problems) === 'true' : undefined),
  };
}
