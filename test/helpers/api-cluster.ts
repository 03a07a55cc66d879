import { readFileSync } from 'node:fs';
import { waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';

/** The PIDs of a process's children (Linux). */
export const children = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

/** Waits until `intake api` with INTAKE_API_WORKERS=n has n processes, each started; returns their PIDs. */
export function apiProcesses(api: IntakeProcess, n = 2): Promise<number[]> {
  return waitFor(
    `${n} API processes listening`,
    async () => {
      const k = children(api.child.pid!);
      return k.length === n && api.logs.filter((l) => l.msg === 'intake started').length === n
        ? k
        : undefined;
    },
    60_000,
  );
}
