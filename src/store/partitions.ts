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

/**
 * One round of partition upkeep: a week of partitions ahead, then the retention drop. Only the
 * migration owner may run it (migration 010): `intake migrate`, `intake maintain`, and a worker that
 * logs in as the owner (`npm start`).
 */
export async function maintainPartitions(
  db: Queryable,
  retentionDays: number,
): Promise<{ created: number; dropped: string[] }> {
  const created = await ensurePartitions(db);
  const dropped = await dropExpiredPartitions(db, retentionDays);
  return { created, dropped };
}

/** Whether the connected role may run the partition functions (the owner, or a superuser). */
export async function canMaintainPartitions(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(
    // By oid from the catalog: a name would need USAGE on the schema just to be looked up.
    `SELECT count(*) = 2 AND bool_and(pg_catalog.has_function_privilege(p.oid, 'EXECUTE')) AS ok
       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'intake' AND p.proname IN ('ensure_partitions', 'drop_partitions_before')`,
  );
  return r.rows[0]!.ok;
}

/**
 * Days after today (UTC) with a daily partition each, without a gap: 7 right after upkeep, 0 when only
 * today's exists, -1 when today's is missing (inserts fail now). Read from the catalog (pg_inherits),
 * which any role may read, so the worker reports it without the right to change it.
 */
export async function partitionsAheadDays(db: Queryable): Promise<number> {
  const r = await db.query<{ ahead: number }>(
    `WITH parts AS (
       SELECT c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'intake.messages'::pg_catalog.regclass)
     SELECT coalesce((SELECT min(g) FROM pg_catalog.generate_series(0, 400) g
              WHERE NOT EXISTS (SELECT 1 FROM parts WHERE relname = 'messages_' ||
                pg_catalog.to_char((now() AT TIME ZONE 'UTC')::date + g, 'YYYYMMDD'))), 401)::int - 1 AS ahead`,
  );
  return r.rows[0]!.ahead;
}

/** Daily partitions of intake.messages for today and later (upkeep keeps a week ahead). */
export async function countPartitionsFromToday(db: Queryable): Promise<number> {
  const r = await db.query<{ ahead: number }>(
    `SELECT count(*)::int AS ahead FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
     WHERE n.nspname = 'intake' AND p.relname = 'messages'
       AND c.relname >= 'messages_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')`,
  );
  return r.rows[0]!.ahead;
}
