import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, quietLog, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';
import {
  IdempotencyKeyInFlightError,
  type OpenedQueue,
  PublishOutcomeUnknownError,
  type PublishRequest,
  type QueueProducer,
  QueueUnavailableError,
} from '../../../src/queue/queue.ts';
import { type NatsFreezeProxy, startFreezeProxy } from '../../helpers/nats-proxy.ts';
import { startRole, tempDir, withDb } from '../../helpers/nats-roles.ts';

/**
 * The answer to a publish must be true (issue 8, item 4, NATS half). A publish that reached the server
 * but whose ack did not come by the caller's deadline may be stored: PublishOutcomeUnknownError, never
 * "not accepted". A request that never left the process is "not accepted" (QueueUnavailableError).
 * The server is frozen with SIGSTOP (by the PID this test started) exactly when the envelope is sent.
 */
let server: NatsServer;
let proxy: NatsFreezeProxy;
let db: TestDatabase;
let producer: QueueProducer;
let queue: OpenedQueue;
const names = uniqueStream('outcome');
const dir = tempDir('nats-outcome');
const procs: IntakeProcess[] = [];
let env: Record<string, string>;

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_outcome')]);
  proxy = await startFreezeProxy(server.nodes[0]!);
  env = {
    ...natsEnv(server, names),
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  // One publish slot, so a second request waits behind a frozen one.
  const config = loadConfig({
    ...env,
    NATS_URL: proxy.url,
    INTAKE_PUBLISH_TIMEOUT_MS: '3000',
    NATS_PUBLISH_CONCURRENCY: '1',
  });
  queue = await openNatsQueue(natsQueueSettings(config), { log: quietLog, roles: ['api'] });
  producer = queue.producer;
});
after(async () => {
  server?.nodes[0]?.signal('SIGCONT');
  await queue?.close();
  for (const p of procs) await p.stop(5000);
  await proxy?.close();
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const keyed = (n: number, key: string): PublishRequest => ({
  message: queuedMessage(n, { sender: 'outcome' }),
  idempotencyKey: `client-a\n${key}`,
  fingerprint: `fp-${key}`,
});

async function storedIds(): Promise<string[]> {
  return withDb(db.url, async (c) => {
    const r = await c.query<{ id: string }>(
      "SELECT id::text FROM intake.messages WHERE sender = 'outcome' ORDER BY id",
    );
    return r.rows.map((x) => x.id);
  });
}

const first = keyed(1, 'order-1');
let waiting: PublishRequest;
let unknownId: string;

test('an ack that never comes by the deadline: PublishOutcomeUnknownError with the id, not "not accepted"', async () => {
  const frozen = proxy.freezeOnPublish(names.subject);
  const started = Date.now();
  const outcome = producer.publish([first], AbortSignal.timeout(1000)).catch((e: unknown) => e);
  await frozen;
  // Meanwhile a second request waits for the only publish slot: it is never sent.
  waiting = { message: queuedMessage(2, { sender: 'outcome' }) };
  const waited = await producer.publish([waiting], AbortSignal.timeout(500)).catch((e: unknown) => e);
  const err = await outcome;
  const ms = Date.now() - started;
  server.nodes[0]!.signal('SIGCONT');

  assert.ok(err instanceof PublishOutcomeUnknownError, `got ${String(err)}`);
  assert.deepEqual(err.ids, [first.message.id]);
  assert.ok(ms >= 900 && ms < 2000, `answered after ${ms} ms, at the caller's 1 s deadline`);
  assert.ok(waited instanceof QueueUnavailableError, `the waiting request got ${String(waited)}`);
  assert.ok(!(waited instanceof PublishOutcomeUnknownError));
  unknownId = first.message.id;
});

test('a retry with the same Idempotency-Key gets the same id; the database ends with one row', async () => {
  const retry = keyed(1, 'order-1');
  const result = await waitFor(
    'the retry to be answered',
    async () => {
      try {
        return await producer.publish([retry], AbortSignal.timeout(1000));
      } catch (err) {
        // The first attempt may still count as in flight for a moment; a client retries a 409 later.
        if (err instanceof IdempotencyKeyInFlightError) return undefined;
        throw err;
      }
    },
    15_000,
    200,
  );
  assert.deepEqual(result, [{ id: unknownId, duplicate: true }]);
  await startRole('worker', env, procs);
  await waitFor('the message stored', async () => (await storedIds()).includes(unknownId), 30_000, 200);
  // A sentinel published after both is stored only after them (one consumer, in order).
  const [sentinel] = await producer.publish([{ message: queuedMessage(3, { sender: 'outcome' }) }]);
  await waitFor('the sentinel stored', async () => (await storedIds()).includes(sentinel!.id), 30_000, 200);
  const ids = await storedIds();
  assert.deepEqual(
    ids.filter((id) => id === unknownId),
    [unknownId],
    'stored exactly once',
  );
  assert.ok(!ids.includes(waiting.message.id), 'the request that was never sent was not stored');
});

test('a publish attempted while disconnected is "not accepted" (QueueUnavailableError), at once', async () => {
  await server.nodes[0]!.kill('SIGKILL');
  try {
    await waitFor('the producer to notice', () => !producer.isReady(), 30_000);
    const started = Date.now();
    const err = await producer
      .publish([{ message: queuedMessage(4, { sender: 'outcome' }) }], AbortSignal.timeout(2000))
      .catch((e: unknown) => e);
    assert.ok(err instanceof QueueUnavailableError, `got ${String(err)}`);
    assert.ok(Date.now() - started < 500, 'refused without waiting for the deadline');
  } finally {
    await server.nodes[0]!.start();
  }
});

test('a call whose deadline already passed is refused without being sent', async () => {
  await waitFor('ready again', () => producer.isReady(), 30_000);
  const req = { message: queuedMessage(5, { sender: 'outcome' }) };
  const err = await producer.publish([req], AbortSignal.abort()).catch((e: unknown) => e);
  assert.ok(err instanceof QueueUnavailableError, `got ${String(err)}`);
  const [sentinel] = await producer.publish([{ message: queuedMessage(6, { sender: 'outcome' }) }]);
  await waitFor('the sentinel stored', async () => (await storedIds()).includes(sentinel!.id), 30_000, 200);
  assert.ok(!(await storedIds()).includes(req.message.id));
});
