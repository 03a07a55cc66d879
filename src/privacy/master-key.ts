import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Config, ConfigError } from '../config.ts';
import type { Logger } from '../ops/logger.ts';

/**
 * The PII master key: `INTAKE_PII_MASTER_KEY` (base64, 32 bytes) or `INTAKE_PII_MASTER_KEY_FILE`, read
 * and validated by config.ts. Outside production a missing key is generated once into the data
 * directory (mode 0600) so a laptop run works with zero set-up; in production config.ts has already
 * refused to start without one.
 */
export async function loadMasterKey(config: Config, log: Logger): Promise<Buffer> {
  const existing = await findMasterKey(config);
  if (existing) return existing;
  if (config.production) {
    throw new ConfigError([
      'INTAKE_PII_MASTER_KEY (or INTAKE_PII_MASTER_KEY_FILE) is required when NODE_ENV=production',
    ]);
  }
  const file = devKeyFile(config);
  await mkdir(config.dataDir, { recursive: true });
  const key = randomBytes(32);
  await writeFile(file, key.toString('base64'), { mode: 0o600, flag: 'wx' }).catch(async (err) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  log.warn(
    { file },
    'no INTAKE_PII_MASTER_KEY set: generated a development key (never do this in production)',
  );
  return Buffer.from((await readFile(file, 'utf8')).trim(), 'base64');
}

/** Where a development master key is kept, outside production. */
export const devKeyFile = (config: Config) => join(config.dataDir, 'pii-master.key');

/** The configured master key, or the development one already generated; never creates one (doctor). */
export async function findMasterKey(config: Config): Promise<Buffer | undefined> {
  if (config.piiMasterKey) return config.piiMasterKey;
  const file = devKeyFile(config);
  if (!config.production && existsSync(file))
    return Buffer.from((await readFile(file, 'utf8')).trim(), 'base64');
  return undefined;
}

/** The master keys a process holds: the current one, and during a rotation the one being retired. */
export interface MasterKeys {
  current: Buffer;
  previous: Buffer | undefined;
}

/** The current master key (generated outside production, as loadMasterKey does) and the previous one. */
export async function loadMasterKeys(config: Config, log: Logger): Promise<MasterKeys> {
  return { current: await loadMasterKey(config, log), previous: config.piiPreviousMasterKey };
}
