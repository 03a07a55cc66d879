import { generateKey, SCOPES, type Scope } from '../auth/api-keys.ts';
import type { CommandGroup, CommandSpec } from './command.ts';
import { announce, withSession } from './session.ts';

/** `intake keys create|rotate`: API keys (nothing stored) and the PII data key. */
const create: CommandSpec = {
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

const rotate: CommandSpec = {
  name: 'keys rotate',
  summary: 'start a new PII data key now (new data is encrypted under it)',
  description:
    'Creates a new data key, active at once: IPs received from now on are encrypted under it; older keys ' +
    'still decrypt what they encrypted until retention destroys them. Audited as `rotate-key`. Prints ' +
    '{"rotated": "<key id>"}.',
  options: {
    'dry-run': { type: 'boolean', description: 'say what would be done and change nothing' },
  },
  positionals: [],
  config: 'keys',
  async run({ config, log, values }) {
    const dryRun = values['dry-run'] === true;
    return withSession(config!, log, async (s) => {
      const current = await s.pool.query<{ id: string }>(
        'SELECT id FROM intake.data_keys WHERE wrapped IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1',
      );
      const now = current.rows[0]?.id ?? 'none yet';
      announce(`start a new PII data key (the active one is ${now})`, dryRun);
      if (dryRun) {
        console.log(JSON.stringify({ dry_run: true, active: current.rows[0]?.id ?? null }, null, 2));
        return 0;
      }
      const { writeAudit } = await import('../store/subjects.ts');
      const { dataKeys } = await s.keys();
      const id = await dataKeys.rotate();
      await writeAudit(s.pool, s.actor, 'rotate-key', null, { key: id });
      console.log(JSON.stringify({ rotated: id }, null, 2));
      return 0;
    });
  },
};

export const keysCommands: CommandGroup = {
  name: 'keys',
  summary: 'API keys and the PII data key',
  subcommands: [create, rotate],
};
