import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, quietLog, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';
import { insertMessages } from '../../../src/store/messages.ts';
import {
  assertAllStoredOnce,
  consumerBacklog,
  message,
  post,
  scrape,
  startRole,
  tempDir,
  total,
  withDb,
} from '../../helpers/nats-roles.ts';

/**
 * The pipeline through JetStream with real processes: `intake api` and `intake worker` with NATS_URL,
 * a nats-server of its own and a fresh database. Ingest, batch, idempotency, redelivery, loss accounting.
 */
let server: NatsServer;
let db: TestDatabase;
let api: IntakeProcess;
let worker: IntakeProcess | undefined;
const procs: IntakeProcess[] = [];
const names = uniqueStream('pipeline');
const dir = tempDir('nats-pipeline');
let env: Record<string, string>;

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_pipeline')]);
  env = {
    ...natsEnv(server, names),
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    // Short, so the redelivery of a batch a worker never acknowledged comes within the test.
    NATS_ACK_WAIT_MS: '2000',
    // Dead-lettering after 3 attempts keeps the poison test short (backoff 0.5 s, 1 s).
    INTAKE_WORKER_MAX_ATTEMPTS: '3',
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  api = await startRole('api', env, procs);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const bySender = (sender: string) =>
  withDb(db.url, async (c) => {
    const r = await c.query('SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1', [sender]);
    return r.rows[0].n as number;
  });

test('a batch a worker stored but never acknowledged is redelivered and still stored once', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await post(api.url, message(i, 'redeliver'));
    assert.equal(r.status, 202);
    ids.push(r.json.id as string);
  }
  // A worker that dies between COMMIT and ack: store the batch, then vanish without acknowledging.
  const queue = await openNatsQueue(natsQueueSettings(loadConfig(env)), { log: quietLog });
  const batch = await queue.consumer!.receive({
    max: 1000,
    maxWaitMs: 300,
    signal: new AbortController().signal,
  });
  assert.ok(batch && batch.deliveries.length > 0);
  assert.ok(batch.deliveries.every((d) => d.attempt === 1));
  await withDb(db.url, (c) =>
    insertMessages(
      c,
      batch.deliveries.map((d) => d.message),
    ),
  );
  await queue.close();

  worker = await startRole('worker', env, procs);
  await assertAllStoredOnce(db.url, ids);
  await waitFor('the redelivered batch acknowledged', async () => {
    const b = await consumerBacklog(server.url, names.stream, names.consumer);
    return b.pending === 0 && b.ackPending === 0;
  });
  const m = await scrape(worker.url);
  assert.ok(total(m, 'intake_worker_batch_size_count') >= 1, 'the worker received the redelivery');
  assert.equal(
    total(m, 'intake_messages_stored_total'),
    20 - batch.deliveries.length,
    'rows already stored were skipped',
  );
});

test('one message is stored and readable by id', async () => {
  const r = await post(api.url, message(1, 'single'));
  assert.equal(r.status, 202);
  assert.equal(r.json.status, 'accepted');
  const stored = await waitFor('message readable', async () => {
    const g = await fetch(`${api.url}/v1/messages/${r.json.id}`);
    return g.status === 200 ? ((await g.json()) as Record<string, unknown>) : undefined;
  });
  assert.equal(stored.sender, 'single');
  assert.deepEqual(stored.message, { n: 1 });
  assert.equal(stored['sent-from-ip'], 'redacted');
});

test('a valid batch gets ids in order, all stored', async () => {
  const messages = Array.from({ length: 50 }, (_, i) => message(i, 'batch-ok'));
  const r = await post(api.url, { messages }, {}, '/v1/messages/batch');
  assert.equal(r.status, 202);
  const ids = (r.json.items as Array<{ id: string }>).map((x) => x.id);
  assert.equal(ids.length, 50);
  await assertAllStoredOnce(db.url, ids);
  for (const i of [0, 17, 49]) {
    const g = (await (await fetch(`${api.url}/v1/messages/${ids[i]}`)).json()) as { message: { n: number } };
    assert.equal(g.message.n, i, `item ${i} has the id at position ${i}`);
  }
});

test('a batch with one invalid item is refused whole: 400 with pointers, nothing stored', async () => {
  const messages = Array.from({ length: 5 }, (_, i) => message(i, 'batch-bad'));
  messages[3] = { ...messages[3], ts: 'yesterday', extra: true };
  const r = await post(api.url, { messages }, {}, '/v1/messages/batch');
  assert.equal(r.status, 400);
  const pointers = (r.json.errors as Array<{ pointer: string }>).map((e) => e.pointer);
  assert.ok(
    pointers.some((p) => p.startsWith('/messages/3/ts')),
    pointers.join(', '),
  );
  assert.ok(
    pointers.every((p) => p.startsWith('/messages/3')),
    pointers.join(', '),
  );
  // A message published after it is stored, so anything published before would be stored by now.
  const sentinel = await post(api.url, message(0, 'batch-bad-sentinel'));
  await assertAllStoredOnce(db.url, [sentinel.json.id as string]);
  assert.equal(await bySender('batch-bad'), 0);
});

test('the same Idempotency-Key returns the same id and is stored once', async () => {
  const first = await post(api.url, message(1, 'idem'), { 'idempotency-key': 'order-1' });
  const again = await post(api.url, message(1, 'idem'), { 'idempotency-key': 'order-1' });
  assert.equal(first.status, 202);
  assert.equal(again.status, 202);
  assert.equal(again.json.id, first.json.id);
  // Concurrent retries of another key: those grouped with the first get its id, those that find it
  // still in flight get 409 IDEMPOTENCY_KEY_IN_FLIGHT; never a second id. A retry after gets the id.
  const racing = await Promise.all(
    Array.from({ length: 10 }, () =>
      post(api.url, message(2, 'idem-race'), { 'idempotency-key': 'order-2' }),
    ),
  );
  const answered = racing.filter((r) => r.status === 202);
  assert.ok(answered.length >= 1);
  assert.equal(new Set(answered.map((r) => r.json.id)).size, 1);
  for (const r of racing.filter((x) => x.status !== 202)) {
    assert.deepEqual([r.status, r.json.code], [409, 'IDEMPOTENCY_KEY_IN_FLIGHT']);
  }
  const retried = await post(api.url, message(2, 'idem-race'), { 'idempotency-key': 'order-2' });
  assert.deepEqual([retried.status, retried.json.id], [202, answered[0]!.json.id]);
  // A batch retried with its key: the same ids in the same order.
  const batch = { messages: [message(1, 'idem-batch'), message(2, 'idem-batch')] };
  const b1 = await post(api.url, batch, { 'idempotency-key': 'batch-1' }, '/v1/messages/batch');
  const b2 = await post(api.url, batch, { 'idempotency-key': 'batch-1' }, '/v1/messages/batch');
  assert.deepEqual(b2.json.items, b1.json.items);
  const ids = [
    first.json.id,
    answered[0]!.json.id,
    ...(b1.json.items as Array<{ id: string }>).map((x) => x.id),
  ];
  await assertAllStoredOnce(db.url, ids as string[]);
  // The duplicates were republished under the original ids; the insert kept one row each.
  await waitFor('the queue drained', async () => {
    const b = await consumerBacklog(server.url, names.stream, names.consumer);
    return b.pending === 0 && b.ackPending === 0;
  });
  assert.equal(await bySender('idem'), 1);
  assert.equal(await bySender('idem-race'), 1);
  assert.equal(await bySender('idem-batch'), 2);
});

test('a message that can never be stored is retried, dead-lettered with its reason, and settled', async () => {
  // "Can never be stored" made real: a trigger refuses one sender.
  await withDb(db.url, (c) =>
    c.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.sender = 'poison' THEN RAISE EXCEPTION 'poison message refused' USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`),
  );
  const messages = Array.from({ length: 40 }, (_, i) => message(i, i === 17 ? 'poison' : 'poison-neighbour'));
  const batch = await post(api.url, { messages }, {}, '/v1/messages/batch');
  // Alone in its envelope: every message of it dead-lettered → the envelope is terminated.
  const single = await post(api.url, message(99, 'poison'));
  const ids = (batch.json.items as Array<{ id: string }>).map((x) => x.id);
  await assertAllStoredOnce(db.url, [...ids.slice(0, 17), ...ids.slice(18)]);
  const dead = await waitFor(
    'both poison messages dead-lettered',
    async () => {
      const r = await withDb(db.url, (c) =>
        c.query('SELECT id::text, reason, attempts FROM intake.dead_letters ORDER BY id'),
      );
      return r.rows.length === 2 ? r.rows : undefined;
    },
    20_000,
  );
  assert.deepEqual(
    dead.map((d) => d.id),
    [ids[17], single.json.id].sort(),
  );
  for (const d of dead) {
    assert.match(d.reason, /poison message refused/);
    assert.equal(d.attempts, 3);
  }
  await waitFor('every envelope settled on the stream', async () => {
    const b = await consumerBacklog(server.url, names.stream, names.consumer);
    return b.pending === 0 && b.ackPending === 0;
  });
});

test('loss accounting: received = accepted + rejected; accepted = stored + dead-lettered + queued', async () => {
  assert.ok(worker);
  const [api0, w0] = await Promise.all([scrape(api.url), scrape(worker.url)]);
  const rows0 = await withDb(
    db.url,
    async (c) => (await c.query('SELECT count(*)::int AS n FROM intake.messages')).rows[0].n,
  );
  const accepted: string[] = [];
  await Promise.all(
    Array.from({ length: 10 }, async (_, c) => {
      for (let i = 0; i < 30; i++) {
        const r = await post(api.url, message(c * 100 + i, 'accounting'));
        if (r.status === 202) accepted.push(r.json.id as string);
      }
    }),
  );
  for (let i = 0; i < 7; i++) assert.equal((await post(api.url, { sender: 'accounting' })).status, 400);
  await assertAllStoredOnce(db.url, accepted);
  await waitFor('the queue drained', async () => {
    const b = await consumerBacklog(server.url, names.stream, names.consumer);
    return b.pending === 0 && b.ackPending === 0;
  });
  const [api1, w1] = await Promise.all([scrape(api.url), scrape(worker.url)]);
  const d = (a: Map<string, number>, b: Map<string, number>, name: string) => total(b, name) - total(a, name);
  const received = d(api0, api1, 'intake_messages_received_total');
  const acceptedN = d(api0, api1, 'intake_messages_accepted_total');
  const rejected = d(api0, api1, 'intake_messages_rejected_total');
  const stored = d(w0, w1, 'intake_messages_stored_total');
  const dead = d(w0, w1, 'intake_messages_dead_lettered_total');
  assert.equal(acceptedN, accepted.length);
  assert.equal(received, acceptedN + rejected, 'received = accepted + rejected');
  assert.equal(rejected, 7);
  assert.equal(acceptedN, stored + dead + 0, 'accepted = stored + dead-lettered + queued (0)');
  const rows1 = await withDb(
    db.url,
    async (c) => (await c.query('SELECT count(*)::int AS n FROM intake.messages')).rows[0].n,
  );
  assert.equal(rows1 - rows0, stored, 'the stored counter matches the rows');
});
