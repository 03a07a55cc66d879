import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { PermissionViolationError } from '@nats-io/transport-node';
import type { NatsConfig } from '../../config.ts';
import type { Logger } from '../../ops/logger.ts';

/**
 * Creates, checks and repairs the JetStream objects intake needs: the message stream, the DB writer's
 * durable pull consumer, the KV bucket (a stream) of Idempotency-Keys and the readiness probe stream. Every replica runs this at
 * start-up, possibly all at once, so each step is "read, create if missing, compare, update": a
 * concurrent create by another process is not an error, it is read back and compared like any other.
 *
 * Drift (a setting that differs from the configuration) is logged with the field, expected and actual
 * value, then fixed by an update when the server can do so safely (ages, windows, replicas, limits, the
 * discard policy).
 * Storage and retention type are never changed: that would need a new stream and a data migration, so
 * start-up stops with a NatsProvisionError that says so.
 */

/** A stream or consumer exists with settings intake must not change by itself. */
export class NatsProvisionError extends Error {
  readonly code = 'NATS_PROVISION_CONFLICT';
  constructor(message: string) {
    super(message);
    this.name = 'NatsProvisionError';
  }
}

/** What the queue needs beyond NatsConfig. */
export interface ProvisionOptions {
  /** Consumer max_deliver: a safety net above the worker's own attempt limit (NatsQueueSettings). */
  maxDeliver: number;
}

/** Name of the KV bucket holding Idempotency-Key → message id for this stream. */
export function idempotencyBucket(stream: string): string {
  return `${stream}-idempotency`;
}

const ns = (ms: number) => ms * 1_000_000;
/** Fields whose change needs a new stream: refused, never updated. */
const IMMUTABLE_STREAM: Array<keyof StreamConfig> = ['storage', 'retention'];
const IMMUTABLE_CONSUMER: Array<keyof ConsumerConfig> = ['ack_policy', 'filter_subject', 'deliver_subject'];
/**
 * Where a consumer starts only matters when it is created: an operator may create one that starts at a
 * point in time (a replay after a database restore, docs/production.md) and point a worker at it.
 */
const CREATION_ONLY_CONSUMER: Array<keyof ConsumerConfig> = ['deliver_policy', 'replay_policy'];
/** A create racing another process's create, or a momentary API hiccup, is retried this often. */
const ATTEMPTS = 5;

/** The message stream as the configuration wants it (file storage, limits retention). */
export function messageStreamConfig(nats: NatsConfig): StreamConfig {
  return {
    name: nats.stream,
    subjects: [nats.subject],
    storage: StorageType.File,
    // Limits, not WorkQueue: acknowledged messages stay until max_age, so after a database restore the
    // stream can be replayed from a point in time, and other consumers (audit, export) can attach.
    retention: RetentionPolicy.Limits,
    // New: a stream at max_bytes/max_msgs refuses the publish (the API answers 503 QUEUE_FULL). Old
    // would make room by deleting the oldest messages, unprocessed ones included, after they got 202.
    // Room comes back when workers trim what they acknowledged (stream-monitor.ts).
    discard: DiscardPolicy.New,
    max_bytes: nats.maxBytes > 0 ? nats.maxBytes : -1,
    max_msgs: nats.maxMsgs > 0 ? nats.maxMsgs : -1,
    num_replicas: nats.replicas,
    max_age: ns(nats.maxAgeHours * 3_600_000),
    duplicate_window: ns(nats.duplicateWindowS * 1000),
  } as StreamConfig;
}

/**
 * The KV bucket's stream, shaped as @nats-io/kv creates buckets (history 1, rollups, discard new).
 * Discard new is deliberate (docs/production.md#sizing-the-idempotency-bucket): at max_bytes a new key
 * is refused (503, nothing published) instead of evicting the oldest keys, whose retries would be
 * stored again under new ids. Rewriting a key (pending → done, a takeover) replaces its one message, so
 * it still fits in a full bucket.
 */
export function idempotencyStreamConfig(nats: NatsConfig): StreamConfig {
  const bucket = idempotencyBucket(nats.stream);
  const ttl = ns(nats.idempotencyTtlHours * 3_600_000);
  return {
    name: `KV_${bucket}`,
    subjects: [`$KV.${bucket}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.New,
    max_msgs_per_subject: 1,
    max_bytes: nats.idempotencyMaxBytes > 0 ? nats.idempotencyMaxBytes : -1,
    allow_rollup_hdrs: true,
    // Reads go to the stream leader: a direct get may be served by a lagging replica and miss a key
    // that another API process has just claimed.
    allow_direct: false,
    num_replicas: nats.replicas,
    max_age: ttl,
    duplicate_window: Math.min(ttl, ns(120_000)),
  } as StreamConfig;
}

/**
 * A tiny stream every process writes to once a second (link.ts healthCheck): it lives in the same store,
 * account and cluster as the message stream, so a write that fails there (store full, no quorum) is a
 * publish that would fail too. One message is kept.
 */
export function probeStreamConfig(nats: NatsConfig): StreamConfig {
  return {
    name: `${nats.stream}-probe`,
    subjects: [probeSubject(nats)],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_msgs: 1,
    num_replicas: nats.replicas,
  } as StreamConfig;
}

/** The subject of the readiness probe stream. */
export function probeSubject(nats: NatsConfig): string {
  return `_intake.probe.${nats.stream}`;
}

/** The DB writer's durable pull consumer. */
export function writerConsumerConfig(nats: NatsConfig, opts: ProvisionOptions): ConsumerConfig {
  return {
    durable_name: nats.consumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    filter_subject: nats.subject,
    ack_wait: ns(nats.ackWaitMs),
    // Retries with backoff come from the worker (nak with a delay); this only stops a message that
    // keeps killing workers from circulating forever. Outages of PostgreSQL do not count against it:
    // the consumer holds such a batch (release() parks it) instead of handing it back.
    max_deliver: opts.maxDeliver,
    // Counted in stream messages (envelopes of up to INTAKE_ENQUEUE_MAX_BATCH queued messages).
    max_ack_pending: 1000,
  } as ConsumerConfig;
}

/** Provisions everything the NATS queue uses; returns the writer consumer's info. */
export async function provisionQueue(
  jsm: JetStreamManager,
  nats: NatsConfig,
  opts: ProvisionOptions,
  log: Logger,
): Promise<ConsumerInfo> {
  await ensureStream(jsm, messageStreamConfig(nats), log);
  await ensureStream(jsm, idempotencyStreamConfig(nats), log);
  await ensureStream(jsm, probeStreamConfig(nats), log);
  return ensureConsumer(jsm, nats.stream, writerConsumerConfig(nats, opts), log);
}

/** Creates the stream, or brings the fields `want` sets into line with it. Idempotent, race-safe. */
export async function ensureStream(
  jsm: JetStreamManager,
  want: StreamConfig,
  log: Logger,
): Promise<StreamInfo> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(want.name);
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        const created = await jsm.streams.add(want);
        log.info({ stream: want.name, replicas: want.num_replicas }, 'NATS stream created');
        return created;
      } catch (addErr) {
        // Another process created it between our info and add (with a config that differs, or the
        // server would have accepted ours as identical): read it back and compare.
        lastErr = addErr;
        continue;
      }
    }
    const have = info.config;
    for (const field of IMMUTABLE_STREAM) {
      if (want[field] !== undefined && have[field] !== want[field]) {
        throw new NatsProvisionError(
          `NATS stream ${want.name} has ${field}=${have[field]} but intake needs ${field}=${want[field]}; ` +
            'intake does not change this by itself: create a new stream (set NATS_STREAM) and move the data, ' +
            'or delete this stream once it is drained',
        );
      }
    }
    const fix: Partial<StreamConfig> = {};
    for (const [field, expected] of Object.entries(want) as Array<[keyof StreamConfig, unknown]>) {
      if (field === 'name' || IMMUTABLE_STREAM.includes(field)) continue;
      const actual = have[field];
      if (field === 'subjects') {
        const missing = (expected as string[]).filter((s) => !(actual as string[] | undefined)?.includes(s));
        if (missing.length === 0) continue;
        reportDrift(log, `stream ${want.name}`, field, expected, actual);
        fix.subjects = [...((actual as string[] | undefined) ?? []), ...missing];
      } else if (!sameValue(expected, actual)) {
        reportDrift(log, `stream ${want.name}`, field, expected, actual);
        const unsafe = limitCutsMessages(field, expected, info);
        if (unsafe) log.error({ stream: want.name, field, expected, actual }, unsafe);
        else (fix as Record<string, unknown>)[field] = expected;
      }
    }
    if (Object.keys(fix).length === 0) return info;
    try {
      const updated = await jsm.streams.update(want.name, fix);
      log.info({ stream: want.name, fixed: Object.keys(fix) }, 'NATS stream settings updated');
      return updated;
    } catch (err) {
      if (notThisUsersJob(err, log, `stream ${want.name}`, Object.keys(fix))) return info;
      throw new NatsProvisionError(
        `NATS stream ${want.name} could not be updated to the configured ${Object.keys(fix).join(', ')} ` +
          `(${(err as Error).message}); fix the setting or the stream by hand`,
      );
    }
  }
  throw new Error(`NATS stream ${want.name} could not be created or read after ${ATTEMPTS} tries`, {
    cause: lastErr,
  });
}

/** Creates the durable consumer, or brings its mutable settings into line. Idempotent, race-safe. */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  want: ConsumerConfig,
  log: Logger,
): Promise<ConsumerInfo> {
  const name = want.durable_name!;
  let lastErr: unknown;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    let info: ConsumerInfo;
    try {
      info = await jsm.consumers.info(stream, name);
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
      try {
        // Servers before 2.10 treat this create as create-or-update, 2.10+ refuse a differing config:
        // both are fine, because the info/compare pass below runs on whatever exists afterwards.
        await jsm.consumers.add(stream, want);
        log.info({ stream, consumer: name }, 'NATS consumer created');
      } catch (addErr) {
        lastErr = addErr;
      }
      continue;
    }
    const have = info.config;
    if (have.deliver_subject) {
      throw new NatsProvisionError(
        `NATS consumer ${name} on ${stream} is a push consumer; intake needs a pull consumer: delete it or set NATS_CONSUMER`,
      );
    }
    for (const field of IMMUTABLE_CONSUMER) {
      if (want[field] !== undefined && !sameValue(want[field], have[field])) {
        throw new NatsProvisionError(
          `NATS consumer ${name} on ${stream} has ${field}=${have[field]} but intake needs ${want[field]}; ` +
            'this cannot be updated: delete the consumer once drained or set NATS_CONSUMER to a new name',
        );
      }
    }
    const fix: Partial<ConsumerConfig> = {};
    for (const [field, expected] of Object.entries(want) as Array<[keyof ConsumerConfig, unknown]>) {
      if (
        field === 'durable_name' ||
        IMMUTABLE_CONSUMER.includes(field) ||
        CREATION_ONLY_CONSUMER.includes(field)
      )
        continue;
      if (!sameValue(expected, have[field])) {
        reportDrift(log, `consumer ${stream}/${name}`, field, expected, have[field]);
        (fix as Record<string, unknown>)[field] = expected;
      }
    }
    if (Object.keys(fix).length === 0) return info;
    try {
      const updated = await jsm.consumers.update(stream, name, fix);
      log.info({ stream, consumer: name, fixed: Object.keys(fix) }, 'NATS consumer settings updated');
      return updated;
    } catch (err) {
      if (notThisUsersJob(err, log, `consumer ${stream}/${name}`, Object.keys(fix))) return info;
      throw new NatsProvisionError(
        `NATS consumer ${name} on ${stream} could not be updated (${(err as Error).message})`,
      );
    }
  }
  throw new Error(`NATS consumer ${name} on ${stream} could not be created after ${ATTEMPTS} tries`, {
    cause: lastErr,
  });
}

/**
 * A lower max_bytes/max_msgs than the stream holds makes the server delete its oldest messages at once,
 * whatever the discard policy (measured on 2.9): unprocessed ones would be lost. Such a limit is not
 * applied; the reason is returned. It applies at a later start once the stream holds less (workers trim
 * what they acknowledged, stream-monitor.ts).
 */
export function limitCutsMessages(field: string, limit: unknown, info: StreamInfo): string | undefined {
  if (typeof limit !== 'number' || limit <= 0) return undefined;
  const held =
    field === 'max_bytes' ? info.state.bytes : field === 'max_msgs' ? info.state.messages : undefined;
  if (held === undefined || held <= limit) return undefined;
  return (
    `NATS stream ${info.config.name} holds ${held} ${field === 'max_bytes' ? 'bytes' : 'messages'}, more than the ` +
    `configured ${field}=${limit}: not applied, because the server would delete the oldest messages, unprocessed ` +
    'ones included; it is applied at a later start once the stream holds less'
  );
}

/**
 * Applies a configured max_bytes/max_msgs that start-up left alone because the stream held more than it
 * (limitCutsMessages), once the stream holds less: called after each trim. Nothing else is touched.
 */
export async function applyDeferredLimits(
  jsm: JetStreamManager,
  nats: NatsConfig,
  info: StreamInfo,
  log: Logger,
): Promise<void> {
  const want = messageStreamConfig(nats);
  const fix: Partial<StreamConfig> = {};
  for (const field of ['max_bytes', 'max_msgs'] as const) {
    if (sameValue(want[field], info.config[field])) continue;
    if (limitCutsMessages(field, want[field], info)) continue;
    fix[field] = want[field];
  }
  if (Object.keys(fix).length === 0) return;
  await jsm.streams.update(nats.stream, fix);
  log.info({ stream: nats.stream, ...fix }, 'NATS stream limit applied now that the stream holds less');
}

/**
 * The server refused the update to this NATS user: with per-role permissions only the provisioning
 * identity (`intake migrate`) may change a stream or consumer (deploy/k8s/base/nats/permissions.conf).
 * That is no conflict: an API or worker whose settings differ (an old pod during a rollout, a
 * setting changed since the last migrate) keeps working with the stream as it is, and says so.
 */
function notThisUsersJob(err: unknown, log: Logger, what: string, fields: string[]): boolean {
  if (!(err instanceof Error && err.cause instanceof PermissionViolationError)) return false;
  log.warn(
    { what, fields },
    'NATS settings differ from the configuration, and this NATS user may not change them: run `intake migrate` to apply them',
  );
  return true;
}

function reportDrift(log: Logger, what: string, field: string, expected: unknown, actual: unknown): void {
  log.warn({ what, field, expected, actual }, 'NATS setting differs from the configuration; fixing it');
}

/** Servers omit fields at their default (false, 0): treat absent and default as equal. */
function sameValue(a: unknown, b: unknown): boolean {
  const norm = (v: unknown) => (v === undefined || v === null || v === false || v === 0 ? undefined : v);
  return norm(a) === norm(b);
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}
