import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import { DataKeys } from '../privacy/data-keys.ts';
import { createIpProtector, type IpProtector } from '../privacy/ip-protector.ts';
import { loadMasterKey } from '../privacy/master-key.ts';
import { openQueue } from '../queue/open-queue.ts';
import type { OpenedQueue } from '../queue/queue.ts';
import { resolveDatabase } from '../store/connect.ts';
import { assertSchemaCurrent } from '../store/migrate.ts';
import { createPool, type Pool } from '../store/pool.ts';

/**
 * What an operator command works with: the database (checked to be at this build's schema, so a
 * missing migration is reported as such and not as an SQL error), the audit actor `cli:<INTAKE_ACTOR>`,
 * and on demand the PII keys and the queue. `close()` releases whatever was opened.
 */
export interface Session {
  pool: Pool;
  actor: string;
  keys(): Promise<{ dataKeys: DataKeys; protector: IpProtector }>;
  queue(): Promise<OpenedQueue>;
}

export async function withSession<T>(
  config: Config,
  log: Logger,
  fn: (s: Session) => Promise<T>,
): Promise<T> {
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
        const master = await loadMasterKey(config, log);
        const dataKeys = new DataKeys(pool, master);
        return { dataKeys, protector: createIpProtector(master, dataKeys) };
      },
      async queue() {
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
