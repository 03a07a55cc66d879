import type { Queryable } from './pool.ts';

/** Creates the daily partitions around today (idempotent, safe from many replicas at once). */
export async function ensurePartitions(db: Queryable, daysBack = 1, daysAhead = 7): Promise<number> {
  const r = await db.query<{ n: number }>('SELECT intake.ensure_partitions($1, $2) AS n', [
    daysBack,
    daysAhead,
  ]);
  return r.rows[0]!.n;
}

/** Drops partitions wholly older than the retention window; returns their names. */
export async function dropExpiredPartitions(db: Queryable, retentionDays: number): Promise<string[]> {
  const r = await db.query<{ name: string }>(
    `SELECT intake.drop_partitions_before(now() - $1 * interval '1 day') AS name`,
    [retentionDays],
  );
  return r.rows.map((x) => x.name);
}
