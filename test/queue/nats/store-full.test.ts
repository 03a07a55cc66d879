import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { JetStreamApiError, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import {
  assertAllStoredOnce,
  message,
  post,
  scrape,
  startRole,
  tempDir,
  total,
  withDb,
} from '../../helpers/nats-roles.ts';

/**
 * The server's JetStream file store at its limit (issue 8, item 2): every publish fails, so /readyz must
 * say so within about 2 s (the load balancer stops routing), ingest answers 503 QUEUE_FULL, and once the
 * operator frees space readiness and 202 come back by themselves. Another stream fills the store, as
 * another tenant of a shared NATS would.
 */
let server: NatsServer;
let db: TestDatabase;
let api: IntakeProcess;
let nc: NatsConnection;
const procs: IntakeProcess[] = [];
const names = uniqueStream('storefull');
const dir = tempDir('nats-store-full');
let env: Record<string, string>;
const FILLER = 'FILLER';

before(async () => {
  [server, db] = await Promise.all([
    startNatsServer([], { config: 'jetstream { max_file_store: 256KB }\n' }),
    createTestDatabase('nats_store_full'),
  ]);
  env = {
    ...natsEnv(server, names),
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  api = await startRole('api', env, procs);
  nc = await connect({ servers: server.url });
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await nc?.close();
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const accepted: string[] = [];

/** Publishes 1 KB messages to another stream until the server refuses for lack of storage. */
async function fillStore(): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: FILLER, subjects: ['filler'], storage: StorageType.File });
  const js = jetstream(nc);
  for (let i = 0; i < 10_000; i++) {
    try {
      await js.publish('filler', 'x'.repeat(1024));
    } catch (err) {
      // 10023: insufficient resources (the server's max_file_store is reached).
      if (err instanceof JetStreamApiError && err.code === 10023) return;
      throw err;
    }
  }
  throw new Error('the store never filled');
}

test('ready and accepting before the store fills', async () => {
  assert.equal((await fetch(`${api.url}/readyz`)).status, 200);
  const r = await post(api.url, message(1, 'store-full'));
  assert.equal(r.status, 202);
  accepted.push(r.json.id as string);
});

test('store full: /readyz 503 within ~2 s, ingest 503 QUEUE_FULL, nothing stored from it', async () => {
  await fillStore();
  const filledAt = Date.now();
  await waitFor('/readyz 503', async () => (await fetch(`${api.url}/readyz`)).status === 503, 3000, 50);
  const unreadyAfter = Date.now() - filledAt;
  const r = await post(api.url, message(2, 'store-full'));
  assert.equal(r.status, 503, JSON.stringify(r.json));
  assert.equal(r.json.code, 'QUEUE_FULL');
  assert.ok(Number(r.retryAfter) > 0);
  const body = (await (await fetch(`${api.url}/readyz`)).json()) as { checks: Record<string, unknown> };
  assert.equal(body.checks.queue, false);
  const m = await scrape(api.url);
  assert.equal(total(m, 'intake_queue_store_writable'), 0, 'the probe result is exported');
  assert.ok(unreadyAfter < 2500, `unready ${unreadyAfter} ms after the store filled`);
});

test('the operator frees space: ready again and accepting, without a restart', async () => {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.purge(FILLER);
  const freedAt = Date.now();
  await waitFor('/readyz 200', async () => (await fetch(`${api.url}/readyz`)).status === 200, 5000, 50);
  const readyAfter = Date.now() - freedAt;
  const r = await post(api.url, message(3, 'store-full'));
  assert.equal(r.status, 202, JSON.stringify(r.json));
  accepted.push(r.json.id as string);
  assert.ok(readyAfter < 2500, `ready ${readyAfter} ms after space was freed`);

  await startRole('worker', env, procs);
  await assertAllStoredOnce(db.url, accepted);
  const stored = await withDb(db.url, async (c) => {
    const q = await c.query<{ n: number }>(
      "SELECT (message->>'n')::int AS n FROM intake.messages WHERE sender = 'store-full' ORDER BY 1",
    );
    return q.rows.map((x) => x.n);
  });
  assert.deepEqual(stored, [1, 3], 'the message answered 503 was not stored');
  assert.equal(total(await scrape(api.url), 'intake_queue_store_writable'), 1);
});

test('the probe stream deleted by an operator is recreated; readiness comes back by itself', async () => {
  const jsm = await jetstreamManager(nc);
  // Whichever process probes first (the API or the worker started above) finds it gone and recreates it.
  const refusals = () =>
    procs.flatMap((p) => p.logs).filter((l) => String(l.msg).startsWith('the JetStream store refuses writes'))
      .length;
  const before = refusals();
  await jsm.streams.delete(`${names.stream}-probe`);
  await waitFor('a failed probe logged', () => refusals() > before, 10_000);
  await waitFor('the probe stream recreated', () => jsm.streams.info(`${names.stream}-probe`), 10_000, 100);
  await waitFor('/readyz 200', async () => (await fetch(`${api.url}/readyz`)).status === 200, 10_000, 100);
});
