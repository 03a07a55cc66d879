import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import type { ProtectedValue } from '../contract/queued-message.ts';
import { randomBytesPooled } from '../contract/random-pool.ts';
import type { DataKeys } from './data-keys.ts';
import { derivePseudonymKey } from './pseudonym-key.ts';

/**
 * Replaces personal data (docs/privacy.md) at the edge by a keyed pseudonym and a ciphertext:
 * - pseudonym = HMAC-SHA-256(pseudonym key, value): deterministic, so equal IPs group and a subject's
 *   rows are found for export and erasure without decrypting anything (pseudonym-key.ts);
 * - ciphertext = AES-256-GCM(data key, value) with a random 96-bit IV, bound by its associated data to
 *   what it belongs to: the message id, the field and the key id. Moved to another row or field it no
 *   longer opens, so a copied ciphertext cannot be revealed under someone else's message.
 *
 * Stored ciphertext formats:
 * - v2: 0x02 || iv (12) || tag (16) || ct, associated data ["intake pii v2", message id, field, key id];
 * - v1 (before the binding): iv || tag || ct, no associated data. Still opened where intake itself
 *   wrote v1 (the IP; declared fields), until retention destroys the keys of that time.
 * A v1 ciphertext whose random IV happens to start with 0x02 is tried as v2 first; that fails, and
 * the v1 attempt after it opens it. A v2 ciphertext read as v1 fails its tag: the fallback adds nothing
 * an attacker could use.
 */
export interface IpProtector {
  /** Top-level `message` keys declared personal data (INTAKE_PII_MESSAGE_FIELDS). */
  readonly fields: readonly string[];
  /** Counts one encryption against the active data key's budget (reserve() first). */
  protect(value: string, to: Binding): ProtectedValue;
  /** Base64 pseudonym of a value (for subject look-ups). */
  pseudonym(value: string): string;
  /** Keyed digest (base64url) of a request body in its protected form (Idempotency-Key reuse checks). */
  fingerprint(text: string): string;
  /** CiphertextMismatchError when the ciphertext was not made for `from`. */
  reveal(
    p: { ciphertext: string | Buffer; key_id: string },
    from: Binding & { legacy: boolean },
  ): Promise<string>;
  /** Undefined when `n` encryptions can be made now, else a promise that settles when they can. */
  reserve(n: number): Promise<void> | undefined;
}

/** What a ciphertext belongs to. */
export interface Binding {
  /** The message id. */
  id: string;
  /** `sent-from-ip`, or the `message` key of a declared field. */
  field: string;
}

/** The keys a protector holds besides the data keys. */
export interface ProtectorKeys {
  pseudonymKey: Buffer;
}

const V2 = 0x02;
const aad = (to: Binding, keyId: string) =>
  Buffer.from(JSON.stringify(['intake pii v2', to.id, to.field, keyId]));

/**
 * `keys`: the stored pseudonym key (pii-keys.ts), or a master key to derive it from as versions before
 * migration 006 did (tests).
 */
export function createIpProtector(
  keys: ProtectorKeys | Buffer,
  dataKeys: DataKeys,
  opts: { fields?: readonly string[] } = {},
): IpProtector {
  if (Buffer.isBuffer(keys) && keys.length < 32)
    throw new Error('the PII master key must be at least 32 bytes');
  const pseudonymKey = Buffer.isBuffer(keys) ? derivePseudonymKey(keys) : keys.pseudonymKey;
  // Its own key, from the pseudonym key rather than the master key: a master key rotation then changes
  // no fingerprint, and a retry across it is still recognised.
  const fingerprintKey = Buffer.from(
    hkdfSync('sha256', pseudonymKey, Buffer.alloc(0), 'intake idempotency fingerprint v1', 32),
  );
  const pseudonym = (value: string) => createHmac('sha256', pseudonymKey).update(value).digest('base64');

  return {
    fields: opts.fields ?? [],
    pseudonym,
    fingerprint: (text) => createHmac('sha256', fingerprintKey).update(text).digest('base64url'),
    reserve: (n) => dataKeys.reserve(n),
    protect(value, to) {
      const { id, key } = dataKeys.take(1);
      const iv = randomBytesPooled(12); // 96-bit GCM IV
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(to, id));
      const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      return {
        pseudonym: pseudonym(value),
        ciphertext: Buffer.concat([Buffer.of(V2), iv, cipher.getAuthTag(), ct]).toString('base64'),
        key_id: id,
      };
    },
    async reveal({ ciphertext, key_id }, from) {
      const buf = typeof ciphertext === 'string' ? Buffer.from(ciphertext, 'base64') : ciphertext;
      const key = await dataKeys.get(key_id).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'UNKNOWN_DATA_KEY') throw new CiphertextMismatchError(from);
        throw err;
      });
      if (buf[0] === V2 && buf.length >= 29) {
        const clear = open(key, buf.subarray(1), aad(from, key_id));
        if (clear !== undefined) return clear;
      }
      const clear = from.legacy && buf.length >= 28 ? open(key, buf, undefined) : undefined;
      if (clear === undefined) throw new CiphertextMismatchError(from);
      return clear;
    },
  };
}

/** AES-256-GCM open of iv || tag || ct; undefined when the tag does not verify. */
function open(key: Buffer, buf: Buffer, associated: Buffer | undefined): string | undefined {
  const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
  decipher.setAuthTag(buf.subarray(12, 28));
  if (associated) decipher.setAAD(associated);
  try {
    return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/** A ciphertext that was not made for the message and field it is stored in: never revealed. */
export class CiphertextMismatchError extends Error {
  readonly code = 'CIPHERTEXT_MISMATCH';
  constructor(readonly from: Binding) {
    super(
      `the ciphertext in ${from.field} of message ${from.id} was not made for it ` +
        '(moved from another row or field, or altered): not revealed',
    );
    this.name = 'CiphertextMismatchError';
  }
}
