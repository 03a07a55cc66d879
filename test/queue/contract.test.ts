import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, quietLog, type TestDatabase } from '../../harness/db.ts';
import { queuedMessage } from '../../harness/messages.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import { openQueue } from '../../src/queue/open-queue.ts';
import type { Batch, OpenedQueue, Outcome } from '../../src/queue/queue.ts';
import { createPool, type Pool } from '../../src/store/pool.ts';

/**
 * The queue contract (src/queue/queue.ts), held by both queues with the same tests: the worker code is
 * the same on both only if they behave the same. Publish, receive, settle (ack), retry (nak with a
 * delay), release (nothing stored: deliverable again), redelivery after a worker vanished, idempotency,
 * close.
 */
for (const kind of ['postgres', 'nats'] as const) {
  describe(`queue contract: ${kind}`, () => {
    let tdb: TestDatabase;
    let pool: Pool;
    let nats: NatsServer | undefined;
    let queue: OpenedQueue;
    const signal = new AbortController().signal;

    const names = uniqueStream('contract');
    const envOf = (): Record<string, string> => ({
      DATABASE_URL: tdb.url,
      INTAKE_QUEUE_LEASE_MS: '1000',
      ...(nats ? { ...natsEnv(nats, names), NATS_ACK_WAIT_MS: '1000' } : {}),
    });
    before(async () => {
      tdb = await createTestDatabase(`contract_${kind}`);
      pool = createPool({
        connectionString: tdb.url,
        max: 5,
        applicationName: 'contract',
        onError: () => {},
      });
      if (kind === 'nats') nats = await startNatsServer();
      queue = await openQueue(loadConfig(envOf(), commandNamed('start')), tdb.url, pool, quietLog, {
        roles: ['api', 'worker'],
      });
    });
    after(async () => {
      await queue.close();
      await queue.close(); // idempotent
      await pool.end();
      await nats?.stop();
      await tdb.drop();
    });

    /** Receives until `n` deliveries arrived or the time is up. */
    const receive = async (n: number, waitMs = 5000): Promise<Batch[]> => {
      const out: Batch[] = [];
      const until = Date.now() + waitMs;
      let got = 0;
      while (got < n && Date.now() < until) {
        const ac = new AbortController();
        const t = setTimeout(() => ac.abort(), Math.max(1, until - Date.now()));
        const b = await queue.consumer!.receive({ max: 100, maxWaitMs: 50, signal: ac.signal });
        clearTimeout(t);
        if (b) {
          out.push(b);
          got += b.deliveries.length;
        }
      }
      return out;
    };
    /** Settles a batch as the worker does: in a transaction, then acknowledged. */
    const settle = async (b: Batch, outcome: (i: number) => Outcome) => {
      const outcomes = b.deliveries.map((_, i) => outcome(i));
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        assert.deepEqual(
          await b.stillQueuedInTransaction(client),
          b.deliveries.map(() => true),
        );
        await b.settleInTransaction(client, outcomes);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      await b.acknowledge(outcomes);
    };
    const ids = (batches: Batch[]) => batches.flatMap((b) => b.deliveries.map((d) => d.message.id)).sort();

    test('what is published is received once, first delivery numbered 1, and gone once settled', async () => {
      const msgs = [queuedMessage(1), queuedMessage(2), queuedMessage(3)];
      const results = await queue.producer.publish(msgs.map((message) => ({ message })));
      assert.deepEqual(
        results.map((r) => r.id),
        msgs.map((m) => m.id),
      );
      const got = await receive(3);
      assert.deepEqual(ids(got), msgs.map((m) => m.id).sort());
      assert.ok(got.every((b) => b.deliveries.every((d) => d.attempt === 1)));
      for (const b of got) await settle(b, () => ({ kind: 'stored' }));
      assert.equal((await receive(1, 1500)).length, 0, 'a settled message comes back');
    });

    test('a retry comes back after its delay as the next attempt; a release comes back too', async () => {
      const m = queuedMessage(4);
      await queue.producer.publish([{ message: m }]);
      const [first] = await receive(1);
      await settle(first!, () => ({ kind: 'retry', delayMs: 300, reason: 'test' }));
      const [second] = await receive(1);
      assert.equal(second!.deliveries[0]!.message.id, m.id);
      assert.equal(second!.deliveries[0]!.attempt, 2);
      await second!.release(200); // the database was down: nothing was stored
      const [third] = await receive(1);
      assert.equal(third!.deliveries[0]!.message.id, m.id);
      await settle(third!, () => ({ kind: 'stored' }));
    });

    test('a batch another worker took and never settled is delivered again once that worker is gone', async () => {
      const m = queuedMessage(5);
      await queue.producer.publish([{ message: m }]);
      // A second worker process takes it and goes away without settling: its lease expires (Postgres),
      // or its close hands it back (NATS; a crashed one stops renewing and ack_wait expires).
      const other = await openQueue(loadConfig(envOf(), commandNamed('worker')), tdb.url, pool, quietLog, {
        roles: ['worker'],
      });
      const taken = await other.consumer!.receive({ max: 10, maxWaitMs: 50, signal });
      assert.equal(taken!.deliveries[0]!.message.id, m.id);
      await other.close();
      const [again] = await receive(1, 10_000);
      assert.equal(again!.deliveries[0]!.message.id, m.id);
      await settle(again!, () => ({ kind: 'stored' }));
    });

    test('an Idempotency-Key: the first id again, duplicate, nothing queued twice; another body is refused', async () => {
      const a = queuedMessage(6);
      const b = queuedMessage(7);
      const [r1] = await queue.producer.publish([
        { message: a, idempotencyKey: 'k\ncontract', fingerprint: 'f1' },
      ]);
      const [r2] = await queue.producer.publish([
        { message: b, idempotencyKey: 'k\ncontract', fingerprint: 'f1' },
      ]);
      assert.deepEqual(r1, { id: a.id, duplicate: false });
      assert.deepEqual(r2, { id: a.id, duplicate: true });
      await assert.rejects(
        queue.producer.publish([
          { message: queuedMessage(8), idempotencyKey: 'k\ncontract', fingerprint: 'f2' },
        ]),
        /different request body/,
      );
      const got = await receive(1);
      assert.deepEqual(ids(got), [a.id]);
      for (const x of got) await settle(x, () => ({ kind: 'stored' }));
      assert.equal((await receive(1, 1500)).length, 0);
    });

    test('inspect() reports the server, the store against its limits and the depth', async () => {
      await queue.producer.publish([{ message: queuedMessage(9) }]);
      const depth = await queue.consumer!.depth();
      const q = await queue.inspect();
      assert.equal(q.kind, kind);
      assert.equal(q.server.reachable, true, JSON.stringify(q.server));
      assert.ok(q.store, 'the store exists');
      assert.deepEqual(q.store.drift, [], 'settings as configured');
      assert.equal(q.store.hasRoom, true);
      if (kind === 'nats') {
        // Depth counts envelopes waiting or unacknowledged; the stream also keeps acknowledged ones.
        assert.ok(q.consumer?.exists, JSON.stringify(q.consumer));
        assert.equal(q.consumer.waiting + q.consumer.unacknowledged, depth);
        assert.ok(q.store.messages >= 1);
        assert.equal(q.store.maxMessages, 0, 'no limit of its own configured');
      } else {
        assert.equal(q.consumer, undefined, 'the table is its own consumer state');
        assert.equal(q.store.messages, depth);
        assert.equal(q.store.maxMessages, 1_000_000, 'INTAKE_QUEUE_MAX_MESSAGES');
      }
      for (const b of await receive(1)) await settle(b, () => ({ kind: 'stored' }));
    });

    test('readiness and depth are reported', async () => {
      assert.equal(queue.producer.isReady(), true);
      const depth = await queue.consumer!.depth();
      assert.equal(typeof depth, 'number');
    });
  });
}
