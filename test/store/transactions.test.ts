import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { createPool, type Pool, withClient } from '../../src/store/pool.ts';
import { inTransaction, withSavepoint } from '../../src/store/transactions.ts';

/**
 * Transaction control in src/store/transactions.ts, against a real PostgreSQL: what commits, what rolls
 * back, when the caller is told COMMIT was sent, and savepoints that let a transaction go on after a
 * failed part (the worker's bisection of a bad batch).
 */
let db: TestDatabase;
let pool: Pool;
before(async () => {
  db = await createTestDatabase('transactions', { migrate: false });
  pool = createPool({ connectionString: db.url, max: 2, applicationName: 'test', onError: () => {} });
  await pool.query('CREATE TABLE t (n int PRIMARY KEY)');
});
after(async () => {
  await pool?.end();
  await db?.drop();
});

const rows = async () => (await pool.query<{ n: number }>('SELECT n FROM t ORDER BY n')).rows.map((r) => r.n);
const insert = (c: { query: Pool['query'] }, n: number) => c.query('INSERT INTO t VALUES ($1)', [n]);

test('inTransaction commits fn, rolls back when fn or beforeCommit throws, and says when COMMIT went', async () => {
  await pool.query('TRUNCATE t');
  await withClient(pool, async (c) => {
    const ok = { commitSent: false };
    const out = await inTransaction(
      c,
      async () => {
        await insert(c, 1);
        return 'done';
      },
      { state: ok },
    );
    assert.equal(out, 'done');
    assert.equal(ok.commitSent, true);

    const failed = { commitSent: false };
    await assert.rejects(
      inTransaction(
        c,
        async () => {
          await insert(c, 2);
          throw new Error('fn failed');
        },
        { state: failed },
      ),
      /fn failed/,
    );
    assert.equal(failed.commitSent, false, 'no COMMIT was sent');

    const late = { commitSent: false };
    await assert.rejects(
      inTransaction(c, () => insert(c, 3), {
        state: late,
        beforeCommit: () => {
          throw new Error('deadline passed');
        },
      }),
      /deadline passed/,
    );
    assert.equal(late.commitSent, false);
    // The client is usable again: nothing left open.
    assert.equal((await c.query<{ s: string }>('SELECT 1::text AS s')).rows[0]!.s, '1');
  });
  assert.deepEqual(await rows(), [1]);
});

test('withSavepoint keeps a failed part out and the transaction going; a bad name sends nothing', async () => {
  await pool.query('TRUNCATE t');
  await withClient(pool, (c) =>
    inTransaction(c, async () => {
      await withSavepoint(c, 'sp_0', () => insert(c, 1));
      await assert.rejects(
        withSavepoint(c, 'sp_1', async () => {
          await insert(c, 2);
          await insert(c, 1); // duplicate key: the statement fails, the transaction is aborted
        }),
        /duplicate key/,
      );
      await insert(c, 3); // still usable: rolled back to sp_1, not aborted
      await assert.rejects(
        withSavepoint(c, 'sp; DROP TABLE t', () => insert(c, 4)),
        /not a savepoint name/,
      );
    }),
  );
  assert.deepEqual(await rows(), [1, 3]);
});
