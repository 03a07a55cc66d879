import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import type { ProtectedValue } from '../contract/queued-message.ts';
import { randomBytesPooled } from '../contract/random-pool.ts';
import type { DataKeys } from './data-keys.ts';

/**
 * Replaces personal data (docs/contract.md §5) at the edge by a keyed pseudonym and a ciphertext:
 * - pseudonym = HMAC-SHA-256(pseudonym key, value): deterministic, so equal IPs group and a subject's
 *   rows are found for export and erasure without decrypting anything; the key is derived from the
 *   master key and never stored;
 * - ciphertext = AES-256-GCM(today's data key, value), random 96-bit IV, stored as iv || tag || ct, so
 *   an authorised operator can reveal it until retention destroys the data key.
 */
export interface IpProtector {
  protect(value: string): ProtectedValue;
  /** Base64 pseudonym of a value (for subject look-ups). */
  pseudonym(value: string): string;
  reveal(p: { ciphertext: string | Buffer; key_id: string }): Promise<string>;
}

export function createIpProtector(masterKey: Buffer, dataKeys: DataKeys): IpProtector {
  if (masterKey.length < 32) throw new Error('the PII master key must be at least 32 bytes');
  const pseudonymKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'intake pseudonym v1', 32));
  const pseudonym = (value: string) => createHmac('sha256', pseudonymKey).update(value).digest('base64');

  return {
    pseudonym,
    protect(value) {
      const { id, key } = dataKeys.active();
      const iv = randomBytesPooled(12); // 96-bit GCM IV
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      return {
        pseudonym: pseudonym(value),
        ciphertext: Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64'),
        key_id: id,
      };
    },
    async reveal({ ciphertext, key_id }) {
      const key = await dataKeys.get(key_id);
      const buf = typeof ciphertext === 'string' ? Buffer.from(ciphertext, 'base64') : ciphertext;
      const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
      decipher.setAuthTag(buf.subarray(12, 28));
      return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}
