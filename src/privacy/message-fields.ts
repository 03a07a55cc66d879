import { isProtected, PROTECTED_MARK as MARK } from '../contract/protected-fields.ts';
import { KeyDestroyedError } from './data-keys.ts';
import { CiphertextMismatchError, type IpProtector } from './ip-protector.ts';

/**
 * Fields inside `message` declared personal data by configuration (`INTAKE_PII_MESSAGE_FIELDS`, top-level
 * keys of `message`) get the IP's treatment: at the edge the value is replaced by
 * `{"$pii": {v: 2, pseudonym, ciphertext, key_id}}` (the ciphertext holds the JSON of the value, bound to
 * the message id and the field), the read API shows `"redacted"` (contract/protected-fields.ts), and
 * reveal/export decrypt it. Clients cannot send `$pii` keys (the contract refuses them), so every
 * marker in a stored message was written by intake; one that is not bound to its place anyway (copied
 * there in the database) is refused, not revealed.
 */

/** What reveal shows instead of a value whose ciphertext does not belong where it is stored. */
export const NOT_REVEALED = 'not revealed';

export function protectFields(
  protector: IpProtector,
  fields: readonly string[],
  message: Record<string, unknown>,
  id: string,
): Record<string, unknown> {
  if (fields.length === 0) return message;
  let out: Record<string, unknown> | undefined;
  for (const f of fields) {
    if (!Object.hasOwn(message, f) || message[f] === null) continue;
    out ??= { ...message };
    out[f] = { [MARK]: { v: 2, ...protector.protect(JSON.stringify(message[f]), { id, field: f }) } };
  }
  return out ?? message;
}

/** Encryptions protectFields makes for a message (at most). */
export function fieldsToProtect(fields: readonly string[], message: Record<string, unknown>): number {
  let n = 0;
  for (const f of fields) if (Object.hasOwn(message, f) && message[f] !== null) n++;
  return n;
}

/**
 * The protected form of a message with each protected field reduced to its pseudonym: deterministic
 * (no ciphertext, no IV), so a retry's fingerprint equals the first request's.
 */
export function withPseudonyms(message: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(message)) {
    if (!isProtected(v)) continue;
    out ??= { ...message };
    out[k] = { [MARK]: v[MARK].pseudonym ?? null };
  }
  return out ?? message;
}

const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * The message of stored record `id` with its protected fields in clear, and the pointers of those not
 * revealed because their ciphertext was not made for this message and field. A marker without a
 * version (written before ciphertexts were bound) is opened only in a field declared personal data:
 * those are the only places intake wrote one.
 */
export async function revealFields(
  protector: IpProtector,
  message: Record<string, unknown>,
  id: string,
): Promise<{ message: Record<string, unknown>; refused: string[] }> {
  let out: Record<string, unknown> | undefined;
  const refused: string[] = [];
  for (const [k, v] of Object.entries(message)) {
    if (!isProtected(v)) continue;
    out ??= { ...message };
    const m = v[MARK] as { v?: unknown; ciphertext?: unknown; key_id?: unknown };
    const legacy = m.v === undefined && protector.fields.includes(k);
    try {
      if (typeof m.ciphertext !== 'string' || typeof m.key_id !== 'string' || (m.v !== 2 && !legacy))
        throw new CiphertextMismatchError({ id, field: k });
      const clear = await protector.reveal(
        { ciphertext: m.ciphertext, key_id: m.key_id },
        { id, field: k, legacy },
      );
      out[k] = JSON.parse(clear);
    } catch (err) {
      if (err instanceof KeyDestroyedError) out[k] = 'destroyed';
      else if (err instanceof CiphertextMismatchError) {
        out[k] = NOT_REVEALED;
        refused.push(`/message/${escapePointer(k)}`);
      } else throw err;
    }
  }
  return { message: out ?? message, refused };
}
