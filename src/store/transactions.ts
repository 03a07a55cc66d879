import type pg from 'pg';

/**
 * Transaction control, the statements every transaction of intake's is made of: BEGIN, COMMIT and
 * ROLLBACK around a unit of work, and savepoints inside one. Here so that SQL stays in src/store/ even
 * where the work in between (the producer's plan, the worker's bisection) belongs to another part.
 */

/** Whether COMMIT was sent: from then on a failure may still have committed (the outcome is unknown). */
export interface CommitState {
  commitSent: boolean;
}

/**
 * Runs `fn` between BEGIN and COMMIT on a client the caller holds. When fn, or `beforeCommit` (the last
 * word before COMMIT, e.g. a deadline that passed), throws, the transaction is rolled back and the error
 * rethrown. `state.commitSent` turns true just before COMMIT is sent; an error after that sends no
 * ROLLBACK, and the caller, who passed `state`, knows the commit may have happened.
 */
export async function inTransaction<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
  opts: { state?: CommitState; beforeCommit?: () => void } = {},
): Promise<T> {
  const state = opts.state ?? { commitSent: false };
  await client.query('BEGIN');
  try {
    const out = await fn();
    opts.beforeCommit?.();
    state.commitSent = true;
    await client.query('COMMIT');
    return out;
  } catch (err) {
    if (!state.commitSent) await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** An SQL identifier, as a savepoint's name must be: it is written into the statement. */
const SAVEPOINT_NAME = /^[a-z_][a-z0-9_]*$/;

/**
 * Runs `fn` under a savepoint of the caller's transaction: released when fn succeeds; when fn fails,
 * rolled back to (the transaction goes on without fn's work) and fn's error rethrown.
 */
export async function withSavepoint<T>(tx: pg.ClientBase, name: string, fn: () => Promise<T>): Promise<T> {
  if (!SAVEPOINT_NAME.test(name)) throw new Error(`not a savepoint name: ${JSON.stringify(name)}`);
  await tx.query(`SAVEPOINT ${name}`);
  let out: T;
  try {
    out = await fn();
  } catch (err) {
    await tx.query(`ROLLBACK TO SAVEPOINT ${name}`);
    throw err;
  }
  await tx.query(`RELEASE SAVEPOINT ${name}`);
  return out;
}
