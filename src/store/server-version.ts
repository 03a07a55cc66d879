import type { Queryable } from './pool.ts';

/** The server's PostgreSQL version as it reports it (`intake doctor` names it). */
export async function serverVersion(db: Queryable): Promise<string> {
  const r = await db.query<{ server_version: string }>('SHOW server_version');
  return r.rows[0]!.server_version;
}
