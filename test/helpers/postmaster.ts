import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../harness/db.ts';

/** The PID of the embedded postmaster running on `dataDir` (an INTAKE_DATA_DIR), if one runs. */
export function postmasterPid(dataDir: string): number | undefined {
  const file = join(dataDir, 'pg', 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** The postmaster runs in its own session: if a failed test left it behind, stop it by its PID. */
export async function stopLeftoverPostgres(dataDir: string): Promise<void> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined) return;
  process.kill(pid, 'SIGQUIT');
  await waitFor('leftover postmaster gone', () => postmasterPid(dataDir) === undefined, 10_000).catch(
    () => {},
  );
}
