import { userInfo } from 'node:os';
import type { Config } from './config.ts';
import { IPV4 } from './contract/keywords.ts';
import type { Logger } from './ops/logger.ts';
import { DataKeys } from './privacy/data-keys.ts';
import { createIpProtector } from './privacy/ip-protector.ts';
import { loadMasterKey } from './privacy/master-key.ts';
import { eraseSubject, exportSubject, revealMessage } from './privacy/subjects.ts';
import { openQueue } from './queue/open-queue.ts';
import { resolveDatabase } from './store/connect.ts';
import { createPool } from './store/pool.ts';
import { writeAudit } from './store/subjects.ts';

/**
 * `intake pii reveal|export|erase` and `intake keys rotate`: the operator's side of docs/contract.md §5. Output is
 * JSON on stdout; every action is audited with the actor `cli:<os user>` (override with INTAKE_ACTOR).
 */
export async function operatorCommand(config: Config, log: Logger, argv: string[]): Promise<number> {
  const [group, action, arg] = argv;
  const usage =
    'usage: intake pii reveal <message-id> | intake pii export <ip> | intake pii erase <ip> | intake keys rotate';
  const known =
    (group === 'pii' && ['reveal', 'export', 'erase'].includes(action ?? '') && arg) ||
    (group === 'keys' && action === 'rotate');
  if (!known) {
    console.error(usage);
    return 2;
  }
  if (group === 'pii' && action !== 'reveal' && !IPV4.test(arg!)) {
    console.error(`intake: "${arg}" is not a dotted-decimal IPv4 address`);
    return 2;
  }
  const actor = `cli:${process.env.INTAKE_ACTOR || userInfo().username}`;
  const db = await resolveDatabase(config, log);
  const pool = createPool({
    connectionString: db.url,
    max: 2,
    applicationName: 'intake-operator',
    onError: () => {},
  });
  try {
    const master = await loadMasterKey(config, log);
    const keys = new DataKeys(pool, master);
    const protector = createIpProtector(master, keys);
    let out: unknown;
    if (group === 'keys') {
      const id = await keys.rotate();
      await writeAudit(pool, actor, 'rotate-key', null, { key: id });
      out = { rotated: id };
    } else if (action === 'reveal') {
      out = await revealMessage(pool, protector, arg!.toLowerCase(), actor);
      if (!out) {
        console.error(`intake: no stored message ${arg}`);
        return 1;
      }
    } else {
      // Export counts and erasure removes the subject's queued messages too.
      const queue = await openQueue(config, db.url, pool, log, { roles: ['api'] });
      try {
        out =
          action === 'export'
            ? await exportSubject(pool, queue.producer, protector, arg!, actor)
            : { erased: await eraseSubject(pool, queue.producer, protector, arg!, actor) };
      } finally {
        await queue.close();
      }
    }
    console.log(JSON.stringify(out, null, 2));
    return 0;
  } finally {
    await pool.end();
    await db.close();
  }
}
