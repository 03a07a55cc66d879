import type { Queryable } from './pool.ts';

/**
 * SQL of intake.data_keys (docs/privacy.md): random data keys, stored wrapped. Wrapping and the key
 * logic are in privacy/data-keys.ts; only the statements live here.
 */

/** A data key row as stored: `wrapped` is null once retention destroyed it. */
export interface DataKeyRow {
  id: string;
  wrapped: Buffer | null;
  createdAt: Date;
}

/**
 * Adds a data key and returns when it was created; `ifAbsent` makes an existing id a no-op (the day's
 * key, created by whoever is first), which returns undefined.
 */
export async function insertDataKey(
  db: Queryable,
  key: { id: string; wrapped: Buffer },
  opts: { ifAbsent?: boolean } = {},
): Promise<Date | undefined> {
  const r = await db.query<{ created_at: Date }>(
    `INSERT INTO intake.data_keys (id, wrapped) VALUES ($1, $2)
     ${opts.ifAbsent ? 'ON CONFLICT (id) DO NOTHING' : ''} RETURNING created_at`,
    [key.id, key.wrapped],
  );
  return r.rows[0]?.created_at;
}

/** The id and age of the newest key not destroyed: one index-only row, cheap to ask every few seconds. */
export async function newestDataKey(db: Queryable): Promise<{ id: string; createdAt: Date } | undefined> {
  const r = await db.query<{ id: string; created_at: Date }>(
    `SELECT id, created_at FROM intake.data_keys WHERE wrapped IS NOT NULL
     ORDER BY created_at DESC, id DESC LIMIT 1`,
  );
  const row = r.rows[0];
  return row && { id: row.id, createdAt: row.created_at };
}

export async function readDataKey(db: Queryable, id: string): Promise<DataKeyRow | undefined> {
  const r = await db.query<{ id: string; wrapped: Buffer | null; created_at: Date }>(
    'SELECT id, wrapped, created_at FROM intake.data_keys WHERE id = $1',
    [id],
  );
  const row = r.rows[0];
  return row && { id: row.id, wrapped: row.wrapped, createdAt: row.created_at };
}

/** Destroys every key created before `cutoff` (erases its wrapped bytes); returns their ids. */
export async function destroyDataKeysBefore(db: Queryable, cutoff: Date): Promise<string[]> {
  const r = await db.query<{ id: string }>(
    `UPDATE intake.data_keys SET wrapped = NULL, destroyed_at = now()
     WHERE created_at < $1 AND wrapped IS NOT NULL RETURNING id`,
    [cutoff],
  );
  return r.rows.map((x) => x.id);
}
