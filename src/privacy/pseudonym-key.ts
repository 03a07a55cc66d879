import { hkdfSync } from 'node:crypto';
import { insertKeyringIfAbsent, readKeyring } from '../store/data-keys.ts';
import type { Queryable } from '../store/pool.ts';
import type { KeyWrapper } from './key-wrapper.ts';

/**
 * The pseudonym key (HMAC of IPs and PII values). Every stored pseudonym was made with it, so it must
 * outlive the master key: a new one would leave every earlier row unfindable by its subject (export,
 * erasure). Versions before migration 006 derived it from the master key with HKDF; that same key is
 * now stored in intake.keyring, wrapped like a data key, by the first process that needs it, and
 * `intake keys rotate-master` re-wraps it with the data keys.
 */
export const PSEUDONYM_KEY = 'pseudonym';

/** The pseudonym key as versions before migration 006 derived it from a master key. */
export function derivePseudonymKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'intake pseudonym v1', 32));
}

/**
 * Reads the stored pseudonym key, storing it first when there is none yet. `derivedFrom` is the master
 * key every existing pseudonym was made with: the previous one while a rotation is under way (nothing
 * was stored yet only if no process of this version ran before it), else the current one.
 */
export async function loadPseudonymKey(
  db: Queryable,
  wrapper: KeyWrapper,
  derivedFrom: Buffer,
): Promise<Buffer> {
  let row = await readKeyring(db, PSEUDONYM_KEY);
  if (!row) {
    await insertKeyringIfAbsent(db, {
      name: PSEUDONYM_KEY,
      ...wrapper.wrap(derivePseudonymKey(derivedFrom)),
    });
    row = (await readKeyring(db, PSEUDONYM_KEY))!;
  }
  return wrapper.unwrap(row.wrapped, row.kekId, 'the pseudonym key').key;
}
