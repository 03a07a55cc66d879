import pg from 'pg';
import { CommitNotConfirmedError, DeadlineExceededError, isSyncRepWaitCancelled } from './errors.ts';
import { inTransaction } from './transactions.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a query: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'>;

// bigint (int8) columns hold `ts`, which fits a JS number exactly (≤ 253402300799 < 2^53).
pg.types.setTypeParser(20, (v) => Number(v));

export interface PoolOptions {
  connectionString: string;
  max: number;
  applicationName: string;
  onError: (err: Error) => void;
  /**
   * Server-side limits for every statement of this pool's connections, and the time to wait for a
   * connection (default 5 s). PostgreSQL aborts a statement that overruns: nothing of it is committed.
   */
  statementTimeoutMs?: number;
  lockTimeoutMs?: number;
  connectionTimeoutMs?: number;
}

export function createPool(opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.max,
    application_name: opts.applicationName,
    // Fail fast when the database is unreachable: callers retry with backoff instead of piling up.
    connectionTimeoutMillis: opts.connectionTimeoutMs ?? 5_000,
    ...(opts.statementTimeoutMs === undefined ? {} : { statement_timeout: opts.statementTimeoutMs }),
    ...(opts.lockTimeoutMs === undefined ? {} : { lock_timeout: opts.lockTimeoutMs }),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle client losing its connection (database restart) emits here; without a listener it would
  // crash the process. The pool discards the client and the next query reconnects.
  pool.on('error', opts.onError);
  return pool;
}

/**
 * Runs fn with a client checked out of the pool. A connection that dies while checked out (database
 * shut down between two statements) emits 'error' on the client, and the pool only listens to idle
 * clients: unhandled, it would crash the process. The next statement fails on its own; the broken
 * client is destroyed on release instead of being reused.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Runs fn in a transaction on one client; rolls back and rethrows on error. */
export function withTransaction<T>(pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, (client) => inTransaction(client, () => fn(client)));
}

/**
 * withTransaction for a write whose COMMIT must be confirmed by the synchronous standby before anyone
 * acts on it (the worker acknowledges the queue only then). When the COMMIT's wait for the standby is
 * cancelled (pg_cancel_backend, an operator, a failover tool), PostgreSQL has already committed locally
 * and answers the COMMIT with success plus a WARNING (syncrep.c): that is caught on the client's notice
 * channel and turned into CommitNotConfirmedError, so the caller treats the write as unconfirmed (it
 * may exist only on the primary) and retries it, idempotently, later. A connection lost during COMMIT
 * rejects with its own error, which leaves the outcome just as unknown.
 */
export function withReplicatedTransaction<T>(
  pool: pg.Pool,
  fn: (tx: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client) => {
    let unconfirmed = false;
    const onNotice = (notice: { file?: string }) => {
      if (isSyncRepWaitCancelled(notice)) unconfirmed = true;
    };
    client.on('notice', onNotice);
    try {
      const out = await inTransaction(client, () => fn(client));
      if (unconfirmed)
        throw new CommitNotConfirmedError(
          'the COMMIT returned after its wait for a synchronous standby was cancelled: committed locally, maybe not replicated',
        );
      return out;
    } finally {
      client.off('notice', onNotice);
    }
  });
}

/** What withClientUntil's callback sees of its deadline. */
export interface Deadline {
  /** True once the deadline passed: send nothing more, above all no COMMIT. */
  readonly passed: boolean;
}

/** How long a statement cancelled at its deadline may take to answer before its connection is dropped. */
const CANCEL_GRACE_MS = 250;

/** Backend PIDs of the connections withClientUntil has used, learnt on first use (one round trip). */
const backendPids = new WeakMap<pg.ClientBase, number>();

/**
 * withClient for a write that must be answered by a deadline (epoch ms), whatever PostgreSQL does.
 * statement_timeout cannot promise that: PostgreSQL switches it off before a COMMIT waits for its
 * synchronous standby, and with no standby that wait has no end. At the deadline the statement running
 * is cancelled (`pg_cancel_backend`, from a separate connection) and gets a moment to answer; the
 * connection is then destroyed instead of going back to the pool, so a stuck COMMIT never drains the
 * pool (nor, cancelled, holds a server connection), and a late cancel never hits another statement.
 *
 * Resolves with fn's value only when the write is confirmed. Rejects with fn's own error when it failed
 * (a cancelled statement before COMMIT: nothing committed); with CommitNotConfirmedError when it
 * returned after a cancel, or with PostgreSQL's warning that its wait for a standby was cancelled
 * (committed locally, maybe not replicated); with DeadlineExceededError when no answer came at all.
 * The caller knows what it had sent, and so which of these leave the outcome unknown.
 */
export async function withClientUntil<T>(
  pool: pg.Pool,
  until: number,
  fn: (client: pg.PoolClient, deadline: Deadline) => Promise<T>,
): Promise<T> {
  // The pool's own connect timeout counts from now, not from the caller's deadline.
  const connecting = pool.connect();
  const connected = await settledBy(
    connecting.then(
      (client) => ({ client }),
      (error: unknown) => ({ error }),
    ),
    until,
  );
  if (!connected || Date.now() >= until) {
    connecting.then(
      (c) => c.release(),
      () => {},
    );
    throw new DeadlineExceededError('the deadline passed while waiting for a connection; nothing was sent');
  }
  if ('error' in connected) throw connected.error;
  const { client } = connected;
  const deadline = { passed: false };
  let broken: Error | undefined;
  let unconfirmed = false;
  const onError = (err: Error) => {
    broken = err;
  };
  const onNotice = (notice: { file?: string }) => {
    if (isSyncRepWaitCancelled(notice)) unconfirmed = true;
  };
  client.on('error', onError);
  client.on('notice', onNotice);
  const work = (async () => {
    if (!backendPids.has(client)) {
      const r = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      backendPids.set(client, r.rows[0]!.pid);
    }
    if (deadline.passed) throw new DeadlineExceededError('the deadline passed before anything was sent');
    return fn(client, deadline);
  })().then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  try {
    let outcome = await settledBy(work, until);
    if (!outcome) {
      deadline.passed = true;
      broken = new DeadlineExceededError('abandoned at its deadline');
      cancelBackend(pool, client);
      outcome = await settledBy(work, Date.now() + CANCEL_GRACE_MS);
      if (!outcome) throw new DeadlineExceededError('PostgreSQL did not answer by the deadline');
      if ('value' in outcome) unconfirmed = true;
    }
    if ('error' in outcome) throw outcome.error;
    if (unconfirmed)
      throw new CommitNotConfirmedError(
        'the COMMIT returned after its wait for a synchronous standby was cancelled: committed locally, maybe not replicated',
      );
    return outcome.value;
  } finally {
    client.off('notice', onNotice);
    // With an error the pool ends the client, destroying its socket if a statement is still out; the
    // listener stays for whatever that socket still reports.
    if (!broken) client.off('error', onError);
    client.release(broken);
  }
}

/** The promise's outcome, or undefined if it has not settled by `until` (epoch ms). */
function settledBy<T>(p: Promise<T>, until: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), Math.max(0, until - Date.now()));
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/**
 * Cancels whatever the client's backend is running, from a fresh connection as the same role (which
 * pg_cancel_backend allows without privileges). Fire and forget: the caller bounds its own wait.
 */
function cancelBackend(pool: pg.Pool, client: pg.ClientBase): void {
  const pid = backendPids.get(client);
  if (pid === undefined) return;
  const canceller = new pg.Client({
    connectionString: pool.options.connectionString,
    connectionTimeoutMillis: 1000,
    application_name: 'intake-cancel',
  });
  canceller.on('error', () => {});
  canceller
    .connect()
    .then(() => canceller.query('SELECT pg_cancel_backend($1)', [pid]))
    .catch(() => {}) // unreachable: the connection is destroyed anyway
    .finally(() => canceller.end().catch(() => {}));
}
