import type { Logger } from '../ops/logger.ts';
import type { Queryable } from '../store/pool.ts';
import { DataKeys, type DataKeysOptions } from './data-keys.ts';
import { createIpProtector, type IpProtector } from './ip-protector.ts';
import { KeyWrapper } from './key-wrapper.ts';
import type { MasterKeys } from './master-key.ts';
import { loadPseudonymKey } from './pseudonym-key.ts';

/**
 * Everything a process that protects or reveals personal data holds (the API, the operator commands):
 * the key wrapper (current and previous master key), the data keys and the protector built on the
 * stored pseudonym key. Nothing is encrypted until dataKeys.refresh() has loaded the active key.
 */
export interface PiiKeys {
  wrapper: KeyWrapper;
  dataKeys: DataKeys;
  protector: IpProtector;
}

export async function openPiiKeys(
  db: Queryable,
  masters: MasterKeys,
  opts: DataKeysOptions & { fields?: readonly string[]; log?: Logger } = {},
): Promise<PiiKeys> {
  const wrapper = new KeyWrapper(masters.current, masters.previous ? [masters.previous] : []);
  const dataKeys = new DataKeys(db, wrapper, opts);
  // While a rotation is under way the pseudonyms so far were made under the previous master key.
  const pseudonymKey = await loadPseudonymKey(db, wrapper, masters.previous ?? masters.current);
  return {
    wrapper,
    dataKeys,
    protector: createIpProtector({ pseudonymKey }, dataKeys, { fields: opts.fields }),
  };
}
