import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { quietLog, waitFor } from '../../../harness/db.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';
import type { Batch, OpenedQueue } from '../../../src/queue/queue.ts';

/**
 * A batch the worker hands back (release: a failed store, e.g. a COMMIT the standby did not confirm)
 * is parked in the consumer and must come back after its delay even when no new message arrives, also
 * to a receive that was already waiting when it was parked (the worker prefetches while it stores).
 */
let server: NatsServer;
let queue: OpenedQueue;
const names = uniqueStream('parked');

before(async () => {
  server = await startNatsServer();
  const config = loadConfig({ ...natsEnv(server, names), DATABASE_URL: 'postgres://unused@127.0.0.1/x' });
  queue = await openNatsQueue(natsQueueSettings(config), { log: quietLog, roles: ['api', 'worker'] });
});
after(async () => {
  await queue?.close();
  await server?.stop();
});

test('a batch released while the next receive waits comes back to it without new messages', async () => {
  const m = queuedMessage(1);
  const [published] = await queue.producer.publish([{ message: m }]);
  assert.equal(published!.id, m.id);
  const abort = new AbortController();
  const consumer = queue.consumer!;
  try {
    const first = await consumer.receive({ max: 10, maxWaitMs: 100, signal: abort.signal });
    assert.deepEqual(
      first!.deliveries.map((d) => d.message.id),
      [m.id],
    );
    // The next receive is already waiting (prefetch) when the store fails and the batch is handed back.
    let again: Batch | null | undefined;
    const waiting = consumer.receive({ max: 10, maxWaitMs: 100, signal: abort.signal }).then((b) => {
      again = b;
    });
    await new Promise((r) => setTimeout(r, 300));
    await first!.release(100);
    await waitFor('the released batch handed out again', () => again !== undefined, 5000);
    await waiting;
    assert.deepEqual(
      again!.deliveries.map((d) => d.message.id),
      [m.id],
    );
    await again!.acknowledge([{ kind: 'stored' }]);
  } finally {
    abort.abort();
  }
});
