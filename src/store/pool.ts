import pg from 'pg';

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
  return withClient(pool, async (client) => {
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  });
}
