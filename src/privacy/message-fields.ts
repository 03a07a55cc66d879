import { isProtected, PROTECTED_MARK as MARK } from '../contract/protected-fields.ts';
import type { IpProtector } from './ip-protector.ts';

/**
 * Fields inside `message` declared personal data by configuration (`INTAKE_PII_MESSAGE_FIELDS`, top-level
 * keys of `message`) get the IP's treatment: at the edge the value is replaced by
 * `{"$pii": {pseudonym, ciphertext, key_id}}` (the ciphertext holds the JSON of the value), the read API
 * shows `"redacted"` (contract/protected-fields.ts), and reveal/export decrypt it.
 */

export function protectFields(
  protector: IpProtector,
  fields: readonly string[],
  message: Record<string, unknown>,
): Record<string, unknown> {
  if (fields.length === 0) return message;
  let out: Record<string, unknown> | undefined;
  for (const f of fields) {
    if (!Object.hasOwn(message, f) || message[f] === null) continue;
    out ??= { ...message };
    out[f] = { [MARK]: protector.protect(JSON.stringify(message[f])) };
  }
  return out ?? message;
}

export async function revealFields(
  protector: IpProtector,
  message: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(message)) {
    if (!isProtected(v)) continue;
    out ??= { ...message };
    try {
      out[k] = JSON.parse(await protector.reveal(v[MARK]));
    } catch {
      out[k] = 'destroyed';
    }
  }
  return out ?? message;
}
