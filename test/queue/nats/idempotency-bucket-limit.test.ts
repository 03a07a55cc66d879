import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { idempotencyBucket, idempotencyStreamConfig } from '../../../src/queue/nats/provision.ts';
import { message, post, scrape, startRole, tempDir } from '../../helpers/nats-roles.ts';

/**
 * NATS_IDEMPOTENCY_MAX_BYTES bounds the Idempotency-Key bucket, with `discard: new`
 * (docs/production.md#sizing-the-idempotency-bucket): a full bucket refuses a NEW key (503, nothing
 * published) and keeps every remembered one, so a retry still gets its original id and is never stored
 * a second time. The server here (Debian's 2.9.10) miscounts bytes under `discard: new` and evicts
 * instead (nats-server #4771, fixed in the 2.10 line the images use), so "full" is made with max_msgs,
 * which 2.9 enforces exactly, on the same stream; the API's behaviour is the same for either limit.
 */
let server: NatsServer;
let db: TestDatabase;
let nc: NatsConnection;
const procs: IntakeProcess[] = [];
const names = uniqueStream('idem_limit');
const dir = tempDir('idem-limit');
let api: IntakeProcess;
const kvStream = `KV_${idempotencyBucket(names.stream)}`;

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('idem_limit')]);
  nc = await connect({ servers: server.url });
  api = await startRole(
    'api',
    {
      ...natsEnv(server, names),
      DATABASE_URL: db.url,
      INTAKE_DATA_DIR: dir.path,
      NATS_IDEMPOTENCY_MAX_BYTES: '1MB',
    },
    procs,
  );
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await nc?.close();
  await server?.stop();
  await db?.drop();
  dir.remove();
});

test('NATS_IDEMPOTENCY_MAX_BYTES takes bytes or a unit; unset, the bucket has no limit of its own', () => {
  const nats = (env: Record<string, string>) => loadConfig(env).nats;
  assert.equal(nats({ NATS_IDEMPOTENCY_MAX_BYTES: '256MB' }).idempotencyMaxBytes, 256 * 1024 ** 2);
  assert.equal(idempotencyStreamConfig(nats({ NATS_IDEMPOTENCY_MAX_BYTES: '2GB' })).max_bytes, 2 * 1024 ** 3);
  const none = idempotencyStreamConfig(nats({}));
  assert.deepEqual([none.max_bytes, none.discard], [-1, 'new']);
  assert.throws(
    () => loadConfig({ NATS_IDEMPOTENCY_MAX_BYTES: 'lots' }),
    (err: unknown) =>
      err instanceof ConfigError && err.problems.some((p) => p.startsWith('NATS_IDEMPOTENCY_MAX_BYTES=')),
  );
});

test('the bucket is provisioned with the limit and discard new', async () => {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(kvStream);
  assert.equal(info.config.max_bytes, 1024 ** 2);
  assert.equal(info.config.discard, 'new');
  assert.equal(info.config.max_msgs_per_subject, 1);
});

test('a full bucket refuses new keys with 503 and keeps the remembered ones: no second id, no second copy', async () => {
  const jsm = await jetstreamManager(nc);
  const kept = await post(api.url, message(1, 'idem-limit'), { 'idempotency-key': 'kept-1' });
  assert.equal(kept.status, 202);
  const held = (await jsm.streams.info(kvStream)).state.messages;
  const published = async () => (await jsm.streams.info(names.stream)).state.messages;
  const info = await jsm.streams.info(kvStream);
  await jsm.streams.update(kvStream, { ...info.config, max_msgs: held });
  try {
    const before = await published();
    const fresh = await post(api.url, message(2, 'idem-limit'), { 'idempotency-key': 'new-1' });
    assert.deepEqual([fresh.status, fresh.json.code], [503, 'QUEUE_FULL']);
    assert.equal(await published(), before, 'nothing was published for the refused key');
    const retry = await post(api.url, message(1, 'idem-limit'), { 'idempotency-key': 'kept-1' });
    assert.deepEqual([retry.status, retry.json.id], [202, kept.json.id], 'the remembered key still answers');
    assert.equal(await published(), before, 'and its retry was not published again');
    const unkeyed = await post(api.url, message(3, 'idem-limit'));
    assert.equal(unkeyed.status, 202, 'requests without a key are not affected');
  } finally {
    await jsm.streams.update(kvStream, { ...info.config, max_msgs: -1 });
  }
  const later = await post(api.url, message(2, 'idem-limit'), { 'idempotency-key': 'new-1' });
  assert.equal(later.status, 202, 'with room again the refused key is taken');
});

test("the API exports the bucket's bytes and limit, as the server counts them", async () => {
  const jsm = await jetstreamManager(nc);
  const keyed = await post(api.url, message(4, 'idem-limit'), { 'idempotency-key': 'metric-1' });
  assert.equal(keyed.status, 202);
  const bucket = idempotencyBucket(names.stream);
  const series = (m: Map<string, number>, name: string) => m.get(`${name}{bucket="${bucket}"}`);
  // The monitor reads every 5 s: wait for a reading taken after the last claim was written.
  const held = (await jsm.streams.info(kvStream)).state.bytes;
  assert.ok(held > 0, 'the bucket holds the claims');
  const m = await waitFor(
    'the bucket usage on /metrics',
    async () => {
      const got = await scrape(api.url);
      return series(got, 'intake_queue_idempotency_bucket_bytes') === held ? got : undefined;
    },
    15_000,
    200,
  );
  assert.equal(series(m, 'intake_queue_idempotency_bucket_limit_bytes'), 1024 ** 2);
});
