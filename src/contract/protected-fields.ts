/**
 * How a protected value looks inside a stored `message` (docs/privacy.md): a field declared personal data
 * (`INTAKE_PII_MESSAGE_FIELDS`) is stored as `{"$pii": {v, pseudonym, ciphertext, key_id}}` (`v` is 2
 * since ciphertexts are bound to their message and field; absent before). The format is part of the
 * stored contract, so reading it (the read API's "redacted") needs no key and lives here; protecting
 * and revealing need the keys and live in privacy/message-fields.ts. The mark is intake's own: the
 * message contract refuses a `$pii` key anywhere in what a client sends (keywords.ts).
 */
export const PROTECTED_MARK = '$pii';

export interface ProtectedField {
  [PROTECTED_MARK]: { v?: 2; pseudonym?: string; ciphertext: string; key_id: string };
}

export function isProtected(v: unknown): v is ProtectedField {
  return typeof v === 'object' && v !== null && PROTECTED_MARK in v && Object.keys(v).length === 1;
}

/** For the read API: protected values become "redacted". */
export function redactFields(message: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(message)) {
    if (!isProtected(v)) continue;
    out ??= { ...message };
    out[k] = 'redacted';
  }
  return out ?? message;
}
