import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { ProtectedValue } from '../queue/queue.ts';

/**
 * Replaces personal data (SPEC §5) at the edge by a keyed pseudonym and a ciphertext:
 * - pseudonym = HMAC-SHA-256(pseudonym key, value): deterministic, so equal IPs group and can be found
 *   for export and erasure without decrypting anything;
 * - ciphertext = AES-256-GCM(data key, value) with a random 96-bit IV, stored as iv || tag || ct, so an
 *   authorised operator can reveal it; destroying the data key makes every copy unreadable.
 * Keys are derived with HKDF from the master key; `keyId` names the data key generation so that
 * rotation and retention can destroy old ones.
 */
export interface IpProtector {
  protect(value: string): ProtectedValue;
  pseudonym(value: string): string;
  reveal(p: { ciphertext: string | Buffer; key_id: string }): string;
}

export function createIpProtector(masterKey: Buffer, keyId = 'k1'): IpProtector {
  if (masterKey.length < 32) throw new Error('the PII master key must be at least 32 bytes');
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), info, 32));
  const pseudonymKey = derive('intake pseudonym v1');
  const dataKeys = new Map<string, Buffer>([[keyId, derive(`intake data key ${keyId}`)]]);

  const pseudonym = (value: string) => createHmac('sha256', pseudonymKey).update(value).digest('base64');

  return {
    pseudonym,
    protect(value) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', dataKeys.get(keyId)!, iv);
      const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      return {
        pseudonym: pseudonym(value),
        ciphertext: Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64'),
        key_id: keyId,
      };
    },
    reveal({ ciphertext, key_id }) {
      let key = dataKeys.get(key_id);
      if (!key) {
        key = derive(`intake data key ${key_id}`);
        dataKeys.set(key_id, key);
      }
      const buf = typeof ciphertext === 'string' ? Buffer.from(ciphertext, 'base64') : ciphertext;
      const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
      decipher.setAuthTag(buf.subarray(12, 28));
      return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}
