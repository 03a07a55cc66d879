import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { v7 as uuidv7 } from 'uuid';
import { createTestDatabase, quietLog, type TestDatabase, waitFor } from '../../../harness/db.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { createMetrics } from '../../../src/ops/metrics.ts';
import { PgQueueConsumer } from '../../../src/queue/postgres/consumer.ts';
import { PgQueueProducer } from '../../../src/queue/postgres/producer.ts';
import { QueueUnavailableError } from '../../../src/queue/queue.ts';
import { createPool, type Pool } from '../../../src/store/pool.ts';
import { pruneIdempotencyKeys } from '../../../src/store/queue-table.ts';
import { Worker } from '../../../src/worker/worker.ts';

const message = (i: number) => queuedMessage(i, { sender: 'q' });

describe('Postgres queue', () => {
  let tdb: TestDatabase;
  let pool: Pool;
  before(async () => {
    tdb = await createTestDatabase('pgqueue');
    pool = createPool({ connectionString: tdb.url, max: 10, applicationName: 'test', onError: () => {} });
  });
  after(async () => {
    await pool.end();
    await tdb.drop();
  });

  const producer = (opts: { lingerMs: number; maxBatch: number; maxPending: number }) =>
    new PgQueueProducer(
      createPool({ connectionString: tdb.url, max: 5, applicationName: 'test-producer', onError: () => {} }),
      { ...opts, maxQueued: 1_000_000 },
    );

  test('concurrent publishes share commits (group commit) and all land in the queue', async () => {
    const q = producer({ lingerMs: 5, maxBatch: 100, maxPending: 10_000 });
    const before = await pool.query<{ n: string }>(
      `SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()`,
    );
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => q.publish([{ message: message(i) }])),
    );
    assert.equal(results.length, 500);
    await q.close();
    // Statistics are flushed when a backend goes idle; the producer's pool is closed by now.
    const after = await waitFor('commit statistics', async () => {
      await new Promise((r) => setTimeout(r, 600));
      return pool.query<{ n: string }>(
        `SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()`,
      );
    });
    const commits = Number(after.rows[0]!.n) - Number(before.rows[0]!.n);
    assert.ok(commits <= 60, `500 publishes took ${commits} commits (with the sampler's)`);
    assert.equal(await new PgQueueConsumer(pool).depth(), 500);
    await pool.query('DELETE FROM intake.queue');
  });

  test('a claimed batch that is never settled (worker crash) is redelivered after its lease', async () => {
    const p = producer({ lingerMs: 0, maxBatch: 100, maxPending: 100 });
    const q = new PgQueueConsumer(pool, { leaseMs: 300, pollMs: 10 });
    const msgs = Array.from({ length: 5 }, (_, i) => message(i));
    await p.publish(msgs.map((m) => ({ message: m })));
    await p.close();
    const signal = new AbortController().signal;
    const first = await q.receive({ max: 100, maxWaitMs: 50, signal });
    assert.equal(first!.deliveries.length, 5);
    assert.ok(first!.deliveries.every((d) => d.attempt === 1));
    // The "crashed" worker never settles. Until the lease ends nobody else gets them.
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    assert.equal(await q.receive({ max: 100, maxWaitMs: 50, signal: ac.signal }), null);
    const again = await q.receive({ max: 100, maxWaitMs: 50, signal });
    assert.deepEqual(again!.deliveries.map((d) => d.message.id).sort(), msgs.map((m) => m.id).sort());
    assert.ok(again!.deliveries.every((d) => d.attempt === 2));

    // A real worker now stores them exactly once, even though the first claim also "stored" some.
    const metrics = createMetrics();
    const w = new Worker(q, pool, { batchSize: 100, maxWaitMs: 50, maxAttempts: 5 }, quietLog, metrics);
    await pool.query(
      'INSERT INTO intake.messages (id, received_at, ts, sender, message) VALUES ($1, $2, 0, $3, $4)',
      [msgs[0]!.id, msgs[0]!.received_at, 'q', '{"i":0}'],
    );
    w.start();
    await waitFor(
      'redelivered batch stored',
      async () => {
        const r = await pool.query(
          "SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM intake.messages WHERE sender = 'q'",
        );
        return r.rows[0].n === 5 && r.rows[0].d === 5;
      },
      10_000,
    );
    await w.stop();
    await w.stop(); // idempotent
    assert.equal(await q.depth(), 0);
    await q.close();
  });

  test('publishing beyond maxPending fails fast: not accepted (QueueUnavailableError)', async () => {
    const q = producer({ lingerMs: 50, maxBatch: 1000, maxPending: 3 });
    const p = [0, 1, 2, 3, 4].map((i) =>
      q.publish([{ message: message(i) }]).then(
        () => 'ok',
        (e: Error) => (e instanceof QueueUnavailableError ? 'not accepted' : String(e)),
      ),
    );
    const out = await Promise.all(p);
    assert.deepEqual(out, ['ok', 'ok', 'ok', 'not accepted', 'not accepted']);
    await q.close();
    await pool.query('DELETE FROM intake.queue');
  });

  test('Idempotency-Keys older than the window are pruned, newer ones kept', async () => {
    await pool.query(
      `INSERT INTO intake.idempotency_keys (key, message_id, created_at) VALUES
       ('old', $1, now() - interval '25 hours'), ('new', $2, now() - interval '1 hour')`,
      [uuidv7(), uuidv7()],
    );
    assert.equal(await pruneIdempotencyKeys(pool, 24), 1);
    const left = await pool.query('SELECT key FROM intake.idempotency_keys');
    assert.deepEqual(
      left.rows.map((r) => r.key),
      ['new'],
    );
  });
});
