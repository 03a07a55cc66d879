import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import type { PiiKeys } from '../privacy/pii-keys.ts';
import type { OpenedQueue } from '../queue/queue.ts';
import type { Pool } from '../store/pool.ts';

/**
 * What an operator command works with: the database (checked to be at this build's schema, so a
 * missing migration is reported as such and not as an SQL error), the audit actor `cli:<INTAKE_ACTOR>`,
 * and on demand the PII keys and the queue. `close()` releases whatever was opened.
 */
export interface Session {
  pool: Pool;
  actor: string;
  keys(): Promise<PiiKeys>;
  queue(): Promise<OpenedQueue>;
}

export async function withSession<T>(
  config: Config,
  log: Logger,
  fn: (s: Session) => Promise<T>,
): Promise<T> {
  // Loaded when a command runs, not when it is declared: `--help` loads none of this.
  const { resolveDatabase } = await import('../store/connect.ts');
  const { assertSchemaCurrent } = await import('../store/migrate.ts');
  const { createPool } = await import('../store/pool.ts');
  const db = await resolveDatabase(config, log);
  const pool = createPool({
    connectionString: db.url,
    max: 2,
    applicationName: 'intake-operator',
    onError: () => {},
  });
  let queue: OpenedQueue | undefined;
  try {
    await assertSchemaCurrent(pool);
    return await fn({
      pool,
      actor: `cli:${config.actor}`,
      async keys() {
        const { loadMasterKeys } = await import('../privacy/master-key.ts');
        const { openPiiKeys } = await import('../privacy/pii-keys.ts');
        return openPiiKeys(pool, await loadMasterKeys(config, log), { fields: config.piiMessageFields });
      },
      async queue() {
        const { openQueue } = await import('../queue/open-queue.ts');
        queue ??= await openQueue(config, db.url, pool, log, { roles: ['api'] });
        return queue;
      },
    });
  } finally {
    await queue?.close();
    await pool.end();
    await db.close();
  }
}

/** What a state-changing command is about to do, on stderr (stdout carries its result). */
export function announce(line: string, dryRun: boolean): void {
  console.error(
    dryRun ? `dry run: would ${line}; nothing changed` : `${line[0]!.toUpperCase()}${line.slice(1)}…`,
  );
}
