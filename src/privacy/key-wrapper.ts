import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Wrapping of stored keys (data keys, the pseudonym key) under a key-encryption key (KEK) derived from
 * a master key with HKDF. The KEK of the current master key wraps; during a master key rotation the
 * KEK of the previous one (INTAKE_PII_PREVIOUS_MASTER_KEY) still unwraps what it wrapped, until
 * `intake keys rotate-master` has re-wrapped everything (docs/runbooks.md).
 *
 * Wrapped form: iv (12) || tag (16) || AES-256-GCM(key). Each wrapped key records the id of its KEK,
 * a MAC of a constant under the KEK, which names it without saying anything about it.
 */
export interface Kek {
  id: string;
  key: Buffer;
}

export function deriveKek(master: Buffer): Kek {
  const key = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'intake key-encryption key v1', 32));
  return { id: createHmac('sha256', key).update('intake kek id').digest('hex').slice(0, 16), key };
}

export class KeyWrapper {
  /** The KEK new wrappings are made with. */
  readonly current: Kek;
  private readonly keks: Kek[];

  /** `previous`: master keys being retired, used only to unwrap. */
  constructor(master: Buffer, previous: readonly Buffer[] = []) {
    this.current = deriveKek(master);
    this.keks = [this.current, ...previous.map(deriveKek)];
  }

  /** Whether a master key other than the current one is configured (a rotation is under way). */
  get rotating(): boolean {
    return this.keks.length > 1;
  }

  wrap(key: Buffer): { wrapped: Buffer; kekId: string } {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.current.key, iv);
    const ct = Buffer.concat([c.update(key), c.final()]);
    return { wrapped: Buffer.concat([iv, c.getAuthTag(), ct]), kekId: this.current.id };
  }

  /**
   * Opens a wrapped key with the KEK that made it (by id when known, else each configured one: rows
   * from before migration 006 carry no id); says which KEK opened it. `what` names the key in the error.
   */
  unwrap(wrapped: Buffer, kekId?: string | null, what = 'a data key'): { key: Buffer; kekId: string } {
    const named = kekId ? this.keks.filter((k) => k.id === kekId) : this.keks;
    for (const kek of named) {
      const d = createDecipheriv('aes-256-gcm', kek.key, wrapped.subarray(0, 12));
      d.setAuthTag(wrapped.subarray(12, 28));
      try {
        return { key: Buffer.concat([d.update(wrapped.subarray(28)), d.final()]), kekId: kek.id };
      } catch {
        // not this KEK: try the next
      }
    }
    throw new Error(
      `cannot unwrap ${what}: INTAKE_PII_MASTER_KEY is not the key it was written with` +
        (kekId && named.length === 0 ? ` (it is wrapped under master key ${kekId})` : '') +
        '; during a master key rotation set INTAKE_PII_PREVIOUS_MASTER_KEY to the key being retired',
    );
  }
}
