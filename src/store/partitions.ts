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

/** Daily partitions of intake.messages for today and later (the worker keeps a week ahead). */
export async function countPartitionsFromToday(db: Queryable): Promise<number> {
  const r = await db.query<{ ahead: number }>(
    `SELECT count(*)::int AS ahead FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
     WHERE n.nspname = 'intake' AND p.relname = 'messages'
       AND c.relname >= 'messages_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')`,
  );
  return r.rows[0]!.ahead;
}
