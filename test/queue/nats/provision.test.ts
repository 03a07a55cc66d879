import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AckPolicy, DeliverPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { type NatsServer, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import {
  ensureStream,
  idempotencyBucket,
  messageStreamConfig,
  NatsProvisionError,
  provisionQueue,
} from '../../../src/queue/nats/provision.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';

/** Stream/consumer provisioning against a real nats-server: idempotent, race-safe, drift fixed. */
let server: NatsServer;
const conns: NatsConnection[] = [];
before(async () => {
  server = await startNatsServer();
});
after(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await server.stop();
});

async function nc(): Promise<NatsConnection> {
  const c = await connect({ servers: server.url });
  conns.push(c);
  return c;
}

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

function natsConfig(label: string, env: Record<string, string> = {}) {
  const n = uniqueStream(label);
  return loadConfig({
    NATS_URL: server.url,
    NATS_STREAM: n.stream,
    NATS_SUBJECT: n.subject,
    NATS_CONSUMER: n.consumer,
    ...env,
  });
}

const opts = { maxDeliver: 15 };

test('provisioning creates stream, consumer and idempotency bucket, and is idempotent', async () => {
  const config = natsConfig('idem');
  const jsm = await jetstreamManager(await nc());
  const { log, warnings } = capture();
  await provisionQueue(jsm, config.nats, opts, log);
  const again = await provisionQueue(jsm, config.nats, opts, log);
  assert.deepEqual(warnings(), [], 'a second run finds nothing to fix');
  assert.equal(again.config.ack_policy, AckPolicy.Explicit);
  assert.equal(again.config.max_deliver, 15);
  const si = await jsm.streams.info(config.nats.stream);
  assert.equal(si.config.storage, StorageType.File);
  assert.equal(si.config.retention, RetentionPolicy.Limits);
  assert.deepEqual(si.config.subjects, [config.nats.subject]);
  assert.equal(si.config.duplicate_window, 120e9);
  const kv = await jsm.streams.info(`KV_${idempotencyBucket(config.nats.stream)}`);
  assert.equal(kv.config.max_age, 24 * 3600e9, 'idempotency window = NATS_IDEMPOTENCY_TTL_HOURS');
});

test('five replicas starting at once all provision successfully', async () => {
  const config = natsConfig('race');
  const managers = await Promise.all(Array.from({ length: 5 }, async () => jetstreamManager(await nc())));
  const { log } = capture();
  const results = await Promise.allSettled(
    managers.map((jsm) => provisionQueue(jsm, config.nats, opts, log)),
  );
  assert.deepEqual(
    results.filter((r) => r.status === 'rejected'),
    [],
  );
  const jsm = managers[0]!;
  const consumers = [];
  for await (const c of jsm.consumers.list(config.nats.stream)) consumers.push(c.name);
  assert.deepEqual(consumers, [config.nats.consumer]);
});

test('drift is reported with field, expected and actual, then fixed', async () => {
  const config = natsConfig('drift');
  const jsm = await jetstreamManager(await nc());
  // As an operator (or an older intake) left them: shorter retention and window, other ack settings.
  await jsm.streams.add({ ...messageStreamConfig(config.nats), max_age: 3600e9, duplicate_window: 10e9 });
  await jsm.consumers.add(config.nats.stream, {
    durable_name: config.nats.consumer,
    ack_policy: AckPolicy.Explicit,
    filter_subject: config.nats.subject,
    ack_wait: 5e9,
    max_deliver: 3,
  });
  const { log, warnings } = capture();
  await provisionQueue(jsm, config.nats, opts, log);
  const drift = new Map(warnings().map((w) => [w.field, w]));
  assert.deepEqual(drift.get('max_age'), { ...drift.get('max_age'), expected: 168 * 3600e9, actual: 3600e9 });
  assert.deepEqual(drift.get('duplicate_window'), {
    ...drift.get('duplicate_window'),
    expected: 120e9,
    actual: 10e9,
  });
  assert.equal(drift.get('ack_wait')?.actual, 5e9);
  assert.equal(drift.get('max_deliver')?.expected, 15);
  const si = await jsm.streams.info(config.nats.stream);
  assert.equal(si.config.max_age, 168 * 3600e9);
  assert.equal(si.config.duplicate_window, 120e9);
  const ci = await jsm.consumers.info(config.nats.stream, config.nats.consumer);
  assert.equal(ci.config.ack_wait, 30e9);
  assert.equal(ci.config.max_deliver, 15);
  const { log: log2, warnings: w2 } = capture();
  await provisionQueue(jsm, config.nats, opts, log2);
  assert.deepEqual(w2(), [], 'nothing left to fix');
});

test('a consumer created to start at a point in time (replay) is adopted as it is', async () => {
  const config = natsConfig('replay');
  const jsm = await jetstreamManager(await nc());
  const { log, warnings } = capture();
  await provisionQueue(jsm, config.nats, opts, log);
  const since = new Date(Date.now() - 3600_000).toISOString();
  await jsm.consumers.add(config.nats.stream, {
    durable_name: 'replay',
    ack_policy: AckPolicy.Explicit,
    filter_subject: config.nats.subject,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: since,
    ack_wait: 30e9,
    max_deliver: 15,
    max_ack_pending: 1000,
  });
  const ci = await provisionQueue(jsm, { ...config.nats, consumer: 'replay' }, opts, log);
  assert.equal(ci.config.deliver_policy, DeliverPolicy.StartTime);
  assert.deepEqual(warnings(), []);
});

test('a stream with another storage type is refused, not changed', async () => {
  const config = natsConfig('storage');
  const jsm = await jetstreamManager(await nc());
  await jsm.streams.add({ ...messageStreamConfig(config.nats), storage: StorageType.Memory });
  const { log } = capture();
  await assert.rejects(
    ensureStream(jsm, messageStreamConfig(config.nats), log),
    (err: unknown) => err instanceof NatsProvisionError && /storage=memory.*storage=file/.test(err.message),
  );
  assert.equal((await jsm.streams.info(config.nats.stream)).config.storage, StorageType.Memory);
  // Start-up with such a stream fails loudly instead of running against the wrong stream.
  await assert.rejects(openNatsQueue(natsQueueSettings(config), { log }), NatsProvisionError);
});
