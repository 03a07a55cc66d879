import { createHash, randomBytes } from 'node:crypto';

/** The three things a key may be allowed to do (docs/contract.md §2). */
/**
 * What a key may do: `ingest` messages, `read` stored ones, `privacy` (reveal, export, erase personal
 * data), `admin` (list, replay and discard dead letters).
 */
export type Scope = 'ingest' | 'read' | 'privacy' | 'admin';
export const SCOPES: readonly Scope[] = ['ingest', 'read', 'privacy', 'admin'];

/**
 * One API key as configured: only its hash is known to intake. Keys are 32 random bytes, so a plain
 * SHA-256 is the right hash here (a slow password hash buys nothing against 256 bits of entropy and
 * would cost every request).
 */
export interface ApiKey {
  name: string;
  /** `sha256:<hex>` of the key as the client sends it. */
  hash: string;
  scopes: Scope[];
  /**
   * When set, the only senders this key may ingest as (others get 403) and read: a list without
   * `sender` shows only theirs, `?sender=` another one is 403, and another sender's message is 404. A
   * key with senders may hold only `ingest` and `read` (BOUND_SCOPES).
   */
  senders?: string[];
  /** Token bucket for this key: sustained requests per second and burst size. */
  rateLimit?: { perSecond: number; burst: number };
}

/**
 * The scopes a key bound to senders may hold. `privacy` and `admin` act on every sender (a subject's
 * export and erasure must be complete; dead letters are the operators'), so they belong to keys
 * without senders: config refuses the mix, and the auth hook refuses it again per request.
 */
export const BOUND_SCOPES: readonly Scope[] = ['ingest', 'read'];

/** Why a key's scopes and senders cannot go together, or undefined. */
export function boundScopeProblem(scopes: readonly Scope[], senders: readonly string[] | undefined) {
  const unbound = senders === undefined ? [] : scopes.filter((s) => !BOUND_SCOPES.includes(s));
  return unbound.length
    ? `a key bound to senders may hold only ${BOUND_SCOPES.join(' and ')}, not ${unbound.join(', ')}: ` +
        'give those scopes to a separate key without senders'
    : undefined;
}

export function hashKey(key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

/** A new random key and the configuration entry that admits it (the key itself is shown once). */
export function generateKey(
  name: string,
  scopes: Scope[],
  senders?: string[],
): { key: string; entry: ApiKey } {
  const problem = boundScopeProblem(scopes, senders?.length ? senders : undefined);
  if (problem) throw new Error(problem);
  const key = `ik_${randomBytes(32).toString('base64url')}`;
  const entry: ApiKey = { name, hash: hashKey(key), scopes };
  if (senders?.length) entry.senders = senders;
  return { key, entry };
}

/**
 * Parses the `INTAKE_API_KEYS` JSON (an array of ApiKey). Returns the problems found, each saying what
 * to fix, so config.ts can report them with everything else.
 */
export function parseApiKeys(json: string | undefined): { keys: ApiKey[]; problems: string[] } {
  if (json === undefined || json.trim() === '') return { keys: [], problems: [] };
  const problems: string[] = [];
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return {
      keys: [],
      problems: ['INTAKE_API_KEYS is not valid JSON: set a JSON array of {name, hash, scopes}'],
    };
  }
  if (!Array.isArray(raw))
    return { keys: [], problems: ['INTAKE_API_KEYS must be a JSON array of {name, hash, scopes}'] };
  const keys: ApiKey[] = [];
  const names = new Set<string>();
  for (const [i, k] of (raw as Array<Partial<ApiKey>>).entries()) {
    const at = `INTAKE_API_KEYS[${i}]`;
    if (typeof k !== 'object' || k === null) {
      problems.push(`${at} must be an object`);
      continue;
    }
    if (typeof k.name !== 'string' || !/^[\w.-]{1,64}$/.test(k.name))
      problems.push(`${at}.name must be 1-64 of [A-Za-z0-9_.-]`);
    else if (names.has(k.name)) problems.push(`${at}.name "${k.name}" is used twice`);
    else names.add(k.name);
    if (typeof k.hash !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(k.hash)) {
      problems.push(
        `${at}.hash must be "sha256:<64 hex>": create keys with \`intake keys create\`, never configure plain keys`,
      );
    }
    if (!Array.isArray(k.scopes) || k.scopes.length === 0 || !k.scopes.every((s) => SCOPES.includes(s))) {
      problems.push(`${at}.scopes must be a non-empty list of ${SCOPES.join(', ')}`);
    }
    if (
      k.senders !== undefined &&
      (!Array.isArray(k.senders) || !k.senders.every((s) => typeof s === 'string'))
    ) {
      problems.push(`${at}.senders must be a list of sender names`);
    } else if (Array.isArray(k.scopes)) {
      const problem = boundScopeProblem(k.scopes, k.senders);
      if (problem) problems.push(`${at}: ${problem}`);
    }
    const rl = k.rateLimit;
    if (rl !== undefined && !(rl.perSecond > 0 && rl.burst >= 1)) {
      problems.push(`${at}.rateLimit must be {"perSecond": >0, "burst": >=1}`);
    }
    keys.push(k as ApiKey);
  }
  return { keys: problems.length ? [] : keys, problems };
}
