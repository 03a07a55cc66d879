import { generateKey, SCOPES, type Scope } from '../auth/api-keys.ts';
import type { ConfigNeeds } from '../config.ts';
import type { CommandGroup, CommandSpec } from './command.ts';
import { announce, withSession } from './session.ts';

/** `intake keys create|rotate|rotate-master`: API keys (nothing stored), the PII data key and master key. */

/** `rotate` and `rotate-master`: the data keys in the database, under the PII master key. */
const needs: ConfigNeeds = { database: true, piiKey: 'required' };

const create: CommandSpec<undefined> = {
  name: 'keys create',
  summary: 'print a new API key (shown once) and the INTAKE_API_KEYS entry that admits it',
  description:
    'Generates a random API key and prints it with the entry to add to the INTAKE_API_KEYS array (only ' +
    'its hash). Nothing is stored and no configuration or database is read.',
  options: {
    name: { type: 'string', value: 'NAME', required: true, description: 'name of the client the key is for' },
    scopes: {
      type: 'string',
      value: 'LIST',
      required: true,
      description: `comma-separated scopes: ${SCOPES.join(', ')}`,
      check: (v) => {
        const bad = v.split(',').filter((s) => !SCOPES.includes(s as Scope));
        return bad.length ? `not a scope: ${bad.join(', ')} (allowed: ${SCOPES.join(', ')})` : undefined;
      },
    },
    senders: {
      type: 'string',
      value: 'LIST',
      description:
        'comma-separated senders the key may send as and read (default: any); a bound key may hold only ingest and read',
      check: (v) =>
        v.split(',').some((s) => s.trim() === '') ? `an empty sender in --senders: ${v}` : undefined,
    },
  },
  positionals: [],
  async run({ values }) {
    const { key, entry } = generateKey(
      values.name as string,
      (values.scopes as string).split(',') as Scope[],
      typeof values.senders === 'string' ? values.senders.split(',') : undefined,
    );
    console.log(`key (give it to the client; it is not stored anywhere):\n  ${key}\n`);
    console.log(`add this entry to the INTAKE_API_KEYS array:\n  ${JSON.stringify(entry)}`);
    return 0;
  },
};

const rotate: CommandSpec<ConfigNeeds> = {
  name: 'keys rotate',
  summary: 'start a new PII data key now (new data is encrypted under it)',
  description:
    'Creates a new data key. Every running API process encrypts under it within ' +
    'INTAKE_DATA_KEY_REFRESH_SECONDS (default 10 s): each looks for the newest key that often. Older keys ' +
    'still decrypt what they encrypted until retention destroys them. Audited as `rotate-key`. Prints ' +
    '{"rotated": "<key id>", "in_use_within_seconds": N}.',
  options: {
    'dry-run': { type: 'boolean', description: 'say what would be done and change nothing' },
  },
  positionals: [],
  needs,
  async run({ config, log, values }) {
    const dryRun = values['dry-run'] === true;
    return withSession(config, log, async (s) => {
      const { newestDataKey } = await import('../store/data-keys.ts');
      const current = await newestDataKey(s.pool);
      announce(`start a new PII data key (the active one is ${current?.id ?? 'none yet'})`, dryRun);
      if (dryRun) {
        console.log(JSON.stringify({ dry_run: true, active: current?.id ?? null }, null, 2));
        return 0;
      }
      const { writeAudit } = await import('../store/subjects.ts');
      const { dataKeys } = await s.keys();
      const id = await dataKeys.rotate();
      await writeAudit(s.pool, s.actor, 'rotate-key', null, { key: id });
      console.log(JSON.stringify({ rotated: id, in_use_within_seconds: config.dataKeyRefreshS }, null, 2));
      return 0;
    });
  },
};

const rotateMaster: CommandSpec<ConfigNeeds> = {
  name: 'keys rotate-master',
  summary: 'finish a PII master key rotation: re-wrap every stored key under the new master key',
  description:
    'Run with INTAKE_PII_MASTER_KEY set to the new master key and INTAKE_PII_PREVIOUS_MASTER_KEY to the one ' +
    'being retired, after every API process runs with both (docs/runbooks.md, "Rotating the PII master ' +
    'key"). In one transaction it unwraps each data key and the pseudonym key with the previous master ' +
    'key and wraps it again under the new one. No ciphertext and no pseudonym changes: old and new ' +
    'messages stay revealable and findable by IP. Safe to run again. Audited as `rotate-key` with ' +
    '`"master": true`. Afterwards remove INTAKE_PII_PREVIOUS_MASTER_KEY and destroy the old key.',
  options: {
    'dry-run': { type: 'boolean', description: 'list the keys that would be re-wrapped and change nothing' },
  },
  positionals: [],
  needs,
  async run({ config, log, values }) {
    const dryRun = values['dry-run'] === true;
    if (!config.piiPreviousMasterKey) {
      console.error(
        'intake keys rotate-master: set INTAKE_PII_PREVIOUS_MASTER_KEY to the master key being retired and ' +
          'INTAKE_PII_MASTER_KEY to the new one (docs/runbooks.md, "Rotating the PII master key")',
      );
      return 1;
    }
    const { keysToRewrap, rewrapUnderCurrent } = await import('../privacy/master-rotation.ts');
    const { withTransaction } = await import('../store/pool.ts');
    const { writeAudit } = await import('../store/subjects.ts');
    return withSession(config, log, async (s) => {
      // Stores the pseudonym key first if no process of this version ever did (derived from the
      // previous master key, which made every pseudonym so far).
      const { wrapper } = await s.keys();
      const pending = await keysToRewrap(s.pool, wrapper);
      announce(`re-wrap ${pending.length} stored keys under master key ${wrapper.current.id}`, dryRun);
      if (dryRun) {
        console.log(JSON.stringify({ dry_run: true, to_rewrap: pending }, null, 2));
        return 0;
      }
      const report = await withTransaction(s.pool, async (tx) => {
        const r = await rewrapUnderCurrent(tx, wrapper);
        await writeAudit(tx, s.actor, 'rotate-key', null, {
          master: true,
          kek: r.kekId,
          data_keys: r.dataKeys.rewrapped,
          pseudonym_key: r.pseudonymKey,
        });
        return r;
      });
      console.log(
        JSON.stringify(
          {
            master_key: report.kekId,
            data_keys: report.dataKeys,
            pseudonym_key_rewrapped: report.pseudonymKey,
            next: 'remove INTAKE_PII_PREVIOUS_MASTER_KEY from every process, then destroy the old master key',
          },
          null,
          2,
        ),
      );
      return 0;
    });
  },
};

export const keysCommands: CommandGroup = {
  name: 'keys',
  summary: 'API keys, the PII data key and the PII master key',
  subcommands: [create, rotate, rotateMaster],
};
