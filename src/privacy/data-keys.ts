import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { Queryable } from '../store/pool.ts';

/**
 * Data keys (docs/contract.md §5): random 256-bit keys that encrypt personal data, stored in PostgreSQL only
 * wrapped by a key-encryption key derived from the master key. One key per UTC day, created by
 * whichever API replica needs it first (the id is the day, so concurrent creators agree), or on demand
 * by `intake keys rotate`. Destroying a key erases its wrapped bytes: the data it protected is gone
 * everywhere, copies included.
 */
export interface DataKey {
  id: string;
  key: Buffer;
}

export class DataKeys {
  private readonly kek: Buffer;
  private readonly cache = new Map<string, Buffer>();
  private current: DataKey | undefined;

  constructor(
    private readonly db: Queryable,
    masterKey: Buffer,
  ) {
    this.kek = Buffer.from(
      hkdfSync('sha256', masterKey, Buffer.alloc(0), 'intake key-encryption key v1', 32),
    );
  }

  /** The key new data is encrypted under (today's, created if missing). */
  active(): DataKey {
    if (!this.current) throw new Error('data keys not loaded: call refresh() first');
    return this.current;
  }

  /**
   * Loads (creating if needed) today's key. Called at start and periodically; if the database is
   * unreachable later the previous key stays in use, so ingestion never depends on PostgreSQL.
   */
  async refresh(now = new Date()): Promise<DataKey> {
    const id = `dk-${now.toISOString().slice(0, 10).replace(/-/g, '')}`;
    if (this.current?.id === id) return this.current;
    await this.db.query(
      'INSERT INTO intake.data_keys (id, wrapped) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
      [id, this.wrap(randomBytes(32))],
    );
    const r = await this.db.query<{ id: string; wrapped: Buffer }>(
      `SELECT id, wrapped FROM intake.data_keys WHERE wrapped IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1`,
    );
    const row = r.rows[0]!;
    this.current = { id: row.id, key: this.unwrap(row.wrapped) };
    this.cache.set(row.id, this.current.key);
    return this.current;
  }

  /** A new key that becomes active at once (`intake keys rotate`). */
  async rotate(): Promise<string> {
    const id = `dk-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
    await this.db.query('INSERT INTO intake.data_keys (id, wrapped) VALUES ($1, $2)', [
      id,
      this.wrap(randomBytes(32)),
    ]);
    this.current = undefined;
    const r = await this.db.query<{ id: string; wrapped: Buffer }>(
      'SELECT id, wrapped FROM intake.data_keys WHERE id = $1',
      [id],
    );
    this.current = { id, key: this.unwrap(r.rows[0]!.wrapped) };
    return id;
  }

  /** The key a ciphertext was made with; throws KeyDestroyedError if retention destroyed it. */
  async get(id: string): Promise<Buffer> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const r = await this.db.query<{ wrapped: Buffer | null }>(
      'SELECT wrapped FROM intake.data_keys WHERE id = $1',
      [id],
    );
    if (!r.rows[0]) throw new UnknownDataKeyError(id);
    const wrapped = r.rows[0].wrapped;
    if (!wrapped) throw new KeyDestroyedError(id);
    const key = this.unwrap(wrapped);
    this.cache.set(id, key);
    return key;
  }

  /** Destroys every key created before `cutoff`; returns their ids. */
  async destroyBefore(cutoff: Date): Promise<string[]> {
    const r = await this.db.query<{ id: string }>(
      `UPDATE intake.data_keys SET wrapped = NULL, destroyed_at = now()
       WHERE created_at < $1 AND wrapped IS NOT NULL RETURNING id`,
      [cutoff],
    );
    for (const { id } of r.rows) this.cache.delete(id);
    return r.rows.map((x) => x.id);
  }

  private wrap(key: Buffer): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.kek, iv);
    const ct = Buffer.concat([c.update(key), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), ct]);
  }

  private unwrap(wrapped: Buffer): Buffer {
    const d = createDecipheriv('aes-256-gcm', this.kek, wrapped.subarray(0, 12));
    d.setAuthTag(wrapped.subarray(12, 28));
    try {
      return Buffer.concat([d.update(wrapped.subarray(28)), d.final()]);
    } catch (err) {
      throw new Error(
        'cannot unwrap a data key: INTAKE_PII_MASTER_KEY is not the key the data was written with',
        {
          cause: err,
        },
      );
    }
  }
}

export class KeyDestroyedError extends Error {
  readonly code = 'KEY_DESTROYED';
  constructor(id: string) {
    super(`data key ${id} was destroyed by retention: the data it protected can no longer be read`);
    this.name = 'KeyDestroyedError';
  }
}

/** A key id intake never made (a ciphertext marker not written by intake). */
export class UnknownDataKeyError extends Error {
  readonly code = 'UNKNOWN_DATA_KEY';
  constructor(id: string) {
    super(`no data key ${JSON.stringify(id.slice(0, 80))} exists`);
    this.name = 'UnknownDataKeyError';
  }
}
