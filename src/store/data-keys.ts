import type { Queryable } from './pool.ts';

/**
 * SQL of the PII key tables (docs/privacy.md): intake.data_keys (random data keys, stored wrapped) and
 * intake.keyring (long-lived secrets such as the pseudonym key, stored wrapped). Wrapping and the key
 * logic are in privacy/; only the statements live here.
 */

/** A data key row as stored: `wrapped` is null once retention destroyed it. */
export interface DataKeyRow {
  id: string;
  wrapped: Buffer | null;
  /** Which key-encryption key wrapped it; null for keys written before migration 006. */
  kekId: string | null;
  createdAt: Date;
}

/**
 * Adds a data key and returns when it was created; `ifAbsent` makes an existing id a no-op (the day's
 * key, created by whoever is first), which returns undefined.
 */
export async function insertDataKey(
  db: Queryable,
  key: { id: string; wrapped: Buffer; kekId: string },
  opts: { ifAbsent?: boolean } = {},
): Promise<Date | undefined> {
  const r = await db.query<{ created_at: Date }>(
    `INSERT INTO intake.data_keys (id, wrapped, kek_id) VALUES ($1, $2, $3)
     ${opts.ifAbsent ? 'ON CONFLICT (id) DO NOTHING' : ''} RETURNING created_at`,
    [key.id, key.wrapped, key.kekId],
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
  const r = await db.query<{ id: string; wrapped: Buffer | null; kek_id: string | null; created_at: Date }>(
    'SELECT id, wrapped, kek_id, created_at FROM intake.data_keys WHERE id = $1',
    [id],
  );
  const row = r.rows[0];
  return row && { id: row.id, wrapped: row.wrapped, kekId: row.kek_id, createdAt: row.created_at };
}

/** Every key not destroyed, oldest first (master key rotation re-wraps them all). */
export async function liveDataKeys(db: Queryable): Promise<DataKeyRow[]> {
  const r = await db.query<{ id: string; wrapped: Buffer; kek_id: string | null; created_at: Date }>(
    `SELECT id, wrapped, kek_id, created_at FROM intake.data_keys WHERE wrapped IS NOT NULL
     ORDER BY created_at, id`,
  );
  return r.rows.map((row) => ({
    id: row.id,
    wrapped: row.wrapped,
    kekId: row.kek_id,
    createdAt: row.created_at,
  }));
}

/**
 * Replaces a key's wrapping, only if it is still the one read (`before`): a key destroyed by retention
 * meanwhile stays destroyed. Returns whether the row was changed.
 */
export async function rewrapDataKey(
  db: Queryable,
  id: string,
  before: Buffer,
  after: { wrapped: Buffer; kekId: string },
): Promise<boolean> {
  const r = await db.query(
    'UPDATE intake.data_keys SET wrapped = $3, kek_id = $4 WHERE id = $1 AND wrapped = $2',
    [id, before, after.wrapped, after.kekId],
  );
  return r.rowCount === 1;
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

/** A secret of intake.keyring as stored. */
export interface KeyringRow {
  name: string;
  wrapped: Buffer;
  kekId: string;
}

export async function readKeyring(db: Queryable, name: string): Promise<KeyringRow | undefined> {
  const r = await db.query<{ name: string; wrapped: Buffer; kek_id: string }>(
    'SELECT name, wrapped, kek_id FROM intake.keyring WHERE name = $1',
    [name],
  );
  const row = r.rows[0];
  return row && { name: row.name, wrapped: row.wrapped, kekId: row.kek_id };
}

/** Stores a secret unless one of that name exists (concurrent first starts agree on the first one). */
export async function insertKeyringIfAbsent(db: Queryable, row: KeyringRow): Promise<void> {
  await db.query(
    `INSERT INTO intake.keyring (name, wrapped, kek_id) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
    [row.name, row.wrapped, row.kekId],
  );
}

/** Replaces a secret's wrapping if it is still the one read; returns whether it changed. */
export async function rewrapKeyring(
  db: Queryable,
  name: string,
  before: Buffer,
  after: { wrapped: Buffer; kekId: string },
): Promise<boolean> {
  const r = await db.query(
    `UPDATE intake.keyring SET wrapped = $3, kek_id = $4, rewrapped_at = now()
     WHERE name = $1 AND wrapped = $2`,
    [name, before, after.wrapped, after.kekId],
  );
  return r.rowCount === 1;
}
