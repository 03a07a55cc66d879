import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, quietLog, type TestDatabase, waitFor } from '../../harness/db.ts';
import { queuedMessage } from '../../harness/messages.ts';
import { createMetrics } from '../../src/ops/metrics.ts';
import { PgQueueConsumer } from '../../src/queue/postgres/consumer.ts';
import { PgQueueProducer } from '../../src/queue/postgres/producer.ts';
import { createPool, type Pool } from '../../src/store/pool.ts';
import { lockErasuresExclusive } from '../../src/store/subjects.ts';
import { Worker } from '../../src/worker/worker.ts';

/**
 * INTAKE_WORKER_CONCURRENCY: a worker stores that many batches at once, each in its own transaction,
 * and stop() waits for all of them. Made visible by holding the erasure lock exclusively from another
 * session: every storing transaction then waits on it in pg_stat_activity, one per batch in flight.
 */
describe('worker concurrency', () => {
  let tdb: TestDatabase;
  let admin: pg.Client;
  /** Not admin: inside admin's transaction pg_stat_activity would be a snapshot from its start. */
  let observer: pg.Client;
  before(async () => {
    tdb = await createTestDatabase('workerconc');
    admin = new pg.Client({ connectionString: tdb.url });
    await admin.connect();
    observer = new pg.Client({ connectionString: tdb.url });
    await observer.connect();
  });
  after(async () => {
    await admin.end();
    await observer.end();
    await tdb.drop();
  });

  const waitingOnErasureLock = async (app: string) => {
    const r = await observer.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = $1 AND wait_event = 'advisory'`,
      [app],
    );
    return r.rows[0]!.n;
  };

  for (const concurrency of [1, 2, 3]) {
    test(`concurrency ${concurrency}: ${concurrency} batch(es) in flight, each message stored once, stop waits for them`, async () => {
      const app = `worker-conc-${concurrency}`;
      const pool: Pool = createPool({
        connectionString: tdb.url,
        max: 6,
        applicationName: app,
        onError: () => {},
      });
      const producerPool = createPool({
        connectionString: tdb.url,
        max: 2,
        applicationName: 'p',
        onError: () => {},
      });
      const producer = new PgQueueProducer(producerPool, {
        lingerMs: 0,
        maxBatch: 100,
        maxPending: 1000,
        maxQueued: 1_000_000,
      });
      const sender = `conc${concurrency}`;
      const msgs = Array.from({ length: 40 }, (_, i) => queuedMessage(i, { sender }));
      await producer.publish(msgs.map((message) => ({ message })));
      await producer.close(); // ends its pool

      await admin.query('BEGIN');
      await lockErasuresExclusive(admin);
      const worker = new Worker(
        new PgQueueConsumer(pool, { leaseMs: 60_000, pollMs: 10 }),
        pool,
        { batchSize: 5, maxWaitMs: 10, maxAttempts: 5, concurrency, prefetch: false },
        quietLog,
        createMetrics(),
      );
      worker.start();
      try {
        await waitFor(`${concurrency} transactions waiting`, async () =>
          (await waitingOnErasureLock(app)) === concurrency ? true : undefined,
        );
        // No more than `concurrency`: give a further batch the time to start, then count again.
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(await waitingOnErasureLock(app), concurrency);

        let stopped = false;
        const stopping = worker.stop().then(() => {
          stopped = true;
        });
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(stopped, false, 'stop() must wait for the batches in flight');
        await admin.query('COMMIT');
        await stopping;
        const r = await admin.query<{ n: number; d: number }>(
          'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM intake.messages WHERE sender = $1',
          [sender],
        );
        // Exactly the batches that were in flight when stop() came were stored, once each.
        assert.equal(r.rows[0]!.n, 5 * concurrency);
        assert.equal(r.rows[0]!.d, 5 * concurrency);
        assert.equal(worker.batches, concurrency);
      } finally {
        await admin.query('ROLLBACK').catch(() => {});
        await worker.stop();
        await pool.end();
        await admin.query('DELETE FROM intake.queue');
      }
    });
  }
});
