import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { assertAllStoredOnce, message, post, startRole, tempDir, withJsm } from '../../helpers/nats-roles.ts';

/**
 * An operator deletes the workers' consumer while they run (a `nats consumer rm` by mistake): the worker
 * reads the client's typed error, provisions the consumer again and stores what is accepted afterwards.
 */
let server: NatsServer;
let db: TestDatabase;
const procs: IntakeProcess[] = [];
const names = uniqueStream('gone');
const dir = tempDir('nats-gone');

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_gone')]);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await server?.stop();
  await db?.drop();
  dir.remove();
});

test('the consumer deleted under a running worker is provisioned again and nothing accepted is lost', async () => {
  const env = { ...natsEnv(server, names), DATABASE_URL: db.url, INTAKE_DATA_DIR: dir.path };
  const intake = await startRole('start', env, procs);
  const accepted: string[] = [];
  const send = async (from: number, count: number) => {
    for (let i = from; i < from + count; i++) {
      const r = await post(intake.url, message(i, 'gone'));
      assert.equal(r.status, 202, JSON.stringify(r.json));
      accepted.push(r.json.id as string);
    }
  };
  await send(0, 50);
  await assertAllStoredOnce(db.url, accepted, 30_000, procs);

  await withJsm(server.url, (jsm) => jsm.consumers.delete(names.stream, names.consumer));
  await send(50, 50);
  await waitFor(
    'the consumer provisioned again',
    () =>
      withJsm(server.url, (jsm) =>
        jsm.consumers.info(names.stream, names.consumer).then(
          () => true,
          () => false,
        ),
      ),
    30_000,
  );
  await assertAllStoredOnce(db.url, accepted, 60_000, procs);
  assert.ok(
    intake.logs.some((l) => l.msg === 'NATS consumer read failed; retrying'),
    'the worker saw the consumer go',
  );
});

test('closing a consumer whose pull fails while it drains (heartbeats missed) does not fail the close', async () => {
  const { openNatsQueue } = await import('../../../src/queue/nats/mod.ts');
  const { natsQueueSettings } = await import('../../../src/queue/open-queue.ts');
  const { loadConfig } = await import('../../../src/config.ts');
  const { quietLog } = await import('../../../harness/db.ts');
  const { queuedMessage } = await import('../../../harness/messages.ts');
  const env = { ...natsEnv(server, uniqueStream('drain')), DATABASE_URL: db.url, INTAKE_DATA_DIR: dir.path };
  const queue = await openNatsQueue(natsQueueSettings(loadConfig(env)), { log: quietLog });
  await queue.producer.publish([{ message: queuedMessage(1) }]);
  // One message, then nothing: the receive ends with its next pull still open, which close() drains.
  const batch = await queue.consumer!.receive({
    max: 10,
    maxWaitMs: 300,
    signal: new AbortController().signal,
  });
  assert.equal(batch?.deliveries.length, 1);
  const node = server.nodes[0]!;
  node.signal('SIGSTOP'); // the server stops answering: the open pull misses its heartbeats
  try {
    const closed = await Promise.race([
      queue.close().then(() => 'closed' as const),
      new Promise((r) => setTimeout(r, 20_000, 'hung')),
    ]);
    assert.equal(closed, 'closed');
  } finally {
    node.signal('SIGCONT');
  }
});
