import { randomBytes } from 'node:crypto';
import type { Logger } from '../ops/logger.ts';
import { destroyDataKeysBefore, insertDataKey, newestDataKey, readDataKey } from '../store/data-keys.ts';
import type { Queryable } from '../store/pool.ts';
import { KeyWrapper } from './key-wrapper.ts';

/**
 * Data keys (docs/privacy.md): random 256-bit keys that encrypt personal data, stored in PostgreSQL only
 * wrapped by a key-encryption key derived from the master key (key-wrapper.ts). Destroying a key erases
 * its wrapped bytes: the data it protected is gone everywhere, copies included.
 *
 * Which key encrypts: the newest one. Every API process asks the database for the newest key id every
 * INTAKE_DATA_KEY_REFRESH_SECONDS (one index-only row) and switches to it, so a key started anywhere
 * (`intake keys rotate`, another process) is used by every running process within that time. A key is
 * used for one UTC day at most: the first process to refresh on a new day starts the day's key (its id
 * is the day, so concurrent creators agree).
 *
 * How much one key encrypts: AES-GCM with random 96-bit IVs must not exceed 2^32 encryptions per key
 * (NIST SP 800-38D §8.3). Each process counts its encryptions per key and never makes more than
 * INTAKE_DATA_KEY_MAX_ENCRYPTIONS under one; at half of it, it starts a new key in the background (or
 * takes one another process started), so the hard stop is normally never met. With P processes (and
 * restarts) sharing a key, a key carries at most P × the budget: the default 2^24 keeps 64 process
 * lifetimes at 2^30, a quarter of the limit.
 */
export interface DataKey {
  id: string;
  key: Buffer;
  /** When the database created it (keys are ordered by it: the newest encrypts). */
  createdAt: Date;
}

export interface DataKeysOptions {
  /** INTAKE_DATA_KEY_MAX_ENCRYPTIONS: most encryptions this process makes under one key. */
  maxEncryptions?: number;
  /** Told about each key this process starts because its budget ran low (the runtime audits it). */
  onBudgetRotation?: (id: string, previous: string | undefined) => Promise<void>;
  log?: Logger;
}

/** Default per-process budget per key: 2^24 (see the file comment for the bound it gives). */
export const DEFAULT_MAX_ENCRYPTIONS = 2 ** 24;

const dayOf = (d: Date) => d.toISOString().slice(0, 10);
const isNewer = (a: { id: string; createdAt: Date }, b: { id: string; createdAt: Date }) =>
  a.createdAt.getTime() > b.createdAt.getTime() ||
  (a.createdAt.getTime() === b.createdAt.getTime() && a.id > b.id);

export class DataKeys {
  private readonly wrapper: KeyWrapper;
  private readonly cache = new Map<string, Buffer>();
  /** Encryptions this process made, per key id. */
  private readonly used = new Map<string, number>();
  private readonly max: number;
  private current: DataKey | undefined;
  private refreshing: Promise<DataKey> | undefined;
  private renewing: Promise<void> | undefined;

  /** `keys`: the master key, or a wrapper holding it and the previous ones (a master key rotation). */
  constructor(
    private readonly db: Queryable,
    keys: Buffer | KeyWrapper,
    private readonly opts: DataKeysOptions = {},
  ) {
    this.wrapper = Buffer.isBuffer(keys) ? new KeyWrapper(keys) : keys;
    this.max = opts.maxEncryptions ?? DEFAULT_MAX_ENCRYPTIONS;
  }

  /** The key new data is encrypted under. */
  active(): DataKey {
    if (!this.current) throw new Error('data keys not loaded: call refresh() first');
    return this.current;
  }

  /** Encryptions this process made under a key. */
  encryptions(id: string): number {
    return this.used.get(id) ?? 0;
  }

  /**
   * The active key, counting `n` encryptions against this process's budget for it. Throws
   * EncryptionBudgetError past the budget: callers first wait for reserve().
   */
  take(n = 1): DataKey {
    const k = this.active();
    const used = this.encryptions(k.id) + n;
    if (used > this.max) throw new EncryptionBudgetError(k.id, this.max);
    this.used.set(k.id, used);
    if (used * 2 >= this.max) this.renewSoon();
    return k;
  }

  /**
   * Undefined when the active key has room for `n` more encryptions (the common case: no promise, no
   * tick lost); else a promise that settles once a key with room is active, or rejects when none can be
   * had (database down). Synchronous with take(), so a check and the encryptions after it cannot
   * interleave with another request's.
   */
  reserve(n: number): Promise<void> | undefined {
    if (this.current && this.encryptions(this.current.id) + n <= this.max) return undefined;
    if (n > this.max)
      return Promise.reject(new RangeError(`${n} encryptions exceed one key's budget of ${this.max}`));
    return this.renew().then(() => this.reserve(n));
  }

  /**
   * Switches to the newest key, starting the day's key first when the newest was made before today
   * (UTC). Called at start and every INTAKE_DATA_KEY_REFRESH_SECONDS; one at a time. If the database is
   * unreachable the current key stays in use, so ingestion never waits for PostgreSQL.
   */
  refresh(now = new Date()): Promise<DataKey> {
    this.refreshing ??= this.poll(now).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** A new key, active in this process at once and in every other at its next refresh. */
  async rotate(): Promise<string> {
    const stamp = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
    const id = `dk-${stamp}-${randomBytes(3).toString('hex')}`;
    const key = randomBytes(32);
    const createdAt = await insertDataKey(this.db, { id, ...this.wrapper.wrap(key) });
    this.cache.set(id, key);
    const made = { id, key, createdAt: createdAt! };
    // A refresh that ran meanwhile may already have moved on to a newer key.
    if (!this.current || isNewer(made, this.current)) this.current = made;
    return id;
  }

  /** The key a ciphertext was made with. KeyDestroyedError if retention destroyed it. */
  async get(id: string): Promise<Buffer> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const row = await readDataKey(this.db, id);
    if (!row) throw new UnknownDataKeyError(id);
    if (!row.wrapped) throw new KeyDestroyedError(id);
    const { key } = this.wrapper.unwrap(row.wrapped, row.kekId);
    this.cache.set(id, key);
    return key;
  }

  /** Destroys every key created before `cutoff`; returns their ids. */
  async destroyBefore(cutoff: Date): Promise<string[]> {
    const ids = await destroyDataKeysBefore(this.db, cutoff);
    for (const id of ids) {
      this.cache.delete(id);
      this.used.delete(id);
    }
    return ids;
  }

  private async poll(now: Date): Promise<DataKey> {
    let newest = await newestDataKey(this.db);
    if (!newest || dayOf(newest.createdAt) < dayOf(now)) {
      const id = `dk-${dayOf(now).replace(/-/g, '')}`;
      await insertDataKey(this.db, { id, ...this.wrapper.wrap(randomBytes(32)) }, { ifAbsent: true });
      newest = (await newestDataKey(this.db))!;
    }
    // A key this process has used up stays behind: renew() starts the next one.
    if (this.current && (!isNewer(newest, this.current) || this.encryptions(newest.id) >= this.max))
      return this.current;
    const key = await this.get(newest.id);
    const next = { id: newest.id, key, createdAt: newest.createdAt };
    if (!this.current || isNewer(next, this.current)) this.current = next;
    return this.current;
  }

  /**
   * Moves to a key with room: the newest, if another process started one that this process has used
   * at most half of, else a new one. One renewal at a time.
   */
  private renew(): Promise<void> {
    this.renewing ??= (async () => {
      const before = this.current?.id;
      await this.refresh();
      const now = this.current!;
      if (now.id !== before && this.encryptions(now.id) * 2 < this.max) return;
      const id = await this.rotate();
      // The new key is in use whether or not the audit row could be written: ingestion goes on.
      await this.opts
        .onBudgetRotation?.(id, before)
        .catch((err: unknown) =>
          this.opts.log?.error(
            { err, key: id },
            'could not audit a data key started for the encryption budget',
          ),
        );
    })().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  private renewSoon(): void {
    if (this.renewing) return;
    this.renew().catch((err: unknown) =>
      this.opts.log?.warn({ err }, 'could not start a new data key; the current one stays in use'),
    );
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

/** This process made as many encryptions under its key as one key may carry from it. */
export class EncryptionBudgetError extends Error {
  readonly code = 'ENCRYPTION_BUDGET';
  constructor(id: string, max: number) {
    super(`data key ${id} carried ${max} encryptions from this process (INTAKE_DATA_KEY_MAX_ENCRYPTIONS)`);
    this.name = 'EncryptionBudgetError';
  }
}
