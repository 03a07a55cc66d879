import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../ops/logger.ts';
import { embeddedUrl, startEmbeddedPostgres } from './embedded-postgres.ts';

/**
 * The database an operator command (migrate, pii, keys, doctor) should use: DATABASE_URL; else the
 * embedded cluster of a running `intake start` (its port and socket directory are lines 4 and 5 of
 * postmaster.pid); else a temporarily started embedded cluster, stopped by `close()`.
 */
export async function resolveDatabase(
  config: Config,
  log: Logger,
): Promise<{ url: string; close(): Promise<void> }> {
  if (config.databaseUrl) return { url: config.databaseUrl, close: async () => {} };
  const pidFile = join(config.dataDir, 'pg', 'postmaster.pid');
  if (existsSync(pidFile)) {
    const lines = readFileSync(pidFile, 'utf8').split('\n');
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    const socketDir = lines[4]?.trim();
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (alive && port > 0 && socketDir) return { url: embeddedUrl(socketDir, port), close: async () => {} };
  }
  const pg = await startEmbeddedPostgres(config.dataDir, log);
  return { url: pg.url, close: pg.stop };
}
