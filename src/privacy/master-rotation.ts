import { liveDataKeys, readKeyring, rewrapDataKey, rewrapKeyring } from '../store/data-keys.ts';
import type { Queryable } from '../store/pool.ts';
import type { KeyWrapper } from './key-wrapper.ts';
import { PSEUDONYM_KEY } from './pseudonym-key.ts';

/**
 * The last step of a master key rotation (docs/runbooks.md, "Rotating the PII master key"): every
 * stored key not wrapped under the current master key (data keys, the pseudonym key) is unwrapped with
 * the previous one and wrapped again under the current one. Nothing encrypted with them changes: the
 * data keys and the pseudonym key stay the same bytes, so every ciphertext still opens and every
 * pseudonym still finds its subject. Run inside one transaction: all are re-wrapped, or none.
 */
export interface RewrapReport {
  /** Data keys not destroyed, and how many of them this run re-wrapped. */
  dataKeys: { live: number; rewrapped: number };
  /** Whether the pseudonym key was re-wrapped. */
  pseudonymKey: boolean;
  /** The KEK id everything is now wrapped under. */
  kekId: string;
}

/** Keys still wrapped under another master key than the current one (for a dry run and a check). */
export async function keysToRewrap(db: Queryable, wrapper: KeyWrapper): Promise<string[]> {
  const pending: string[] = [];
  for (const k of await liveDataKeys(db)) if (k.kekId !== wrapper.current.id) pending.push(k.id);
  const p = await readKeyring(db, PSEUDONYM_KEY);
  if (p && p.kekId !== wrapper.current.id) pending.push(`keyring:${PSEUDONYM_KEY}`);
  return pending;
}

export async function rewrapUnderCurrent(tx: Queryable, wrapper: KeyWrapper): Promise<RewrapReport> {
  const report: RewrapReport = {
    dataKeys: { live: 0, rewrapped: 0 },
    pseudonymKey: false,
    kekId: wrapper.current.id,
  };
  for (const k of await liveDataKeys(tx)) {
    report.dataKeys.live++;
    if (k.kekId === wrapper.current.id) continue;
    const { key } = wrapper.unwrap(k.wrapped!, k.kekId);
    if (await rewrapDataKey(tx, k.id, k.wrapped!, wrapper.wrap(key))) report.dataKeys.rewrapped++;
  }
  const p = await readKeyring(tx, PSEUDONYM_KEY);
  if (p && p.kekId !== wrapper.current.id) {
    const { key } = wrapper.unwrap(p.wrapped, p.kekId, 'the pseudonym key');
    report.pseudonymKey = await rewrapKeyring(tx, PSEUDONYM_KEY, p.wrapped, wrapper.wrap(key));
  }
  return report;
}
