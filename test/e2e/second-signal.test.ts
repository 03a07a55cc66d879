import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { postmasterPid, stopLeftoverPostgres } from '../helpers/postmaster.ts';

/**
 * A second Ctrl-C that lands while `intake start` is stopping its embedded PostgreSQL: the terminal
 * signals the whole process group, which pg_ctl is in unless it runs in its own. Killed mid-way, pg_ctl
 * would leave intake to exit while the postmaster is still running, and the next start would refuse.
 */
const dir = mkdtempSync(join(tmpdir(), 'intake-second-signal-'));
let p: IntakeProcess | undefined;
after(async () => {
  await p?.stop(5000);
  await stopLeftoverPostgres(dir);
  rmSync(dir, { recursive: true, force: true });
});

/** A running `pg_ctl` whose parent is `ppid`. */
function pgCtlChildOf(ppid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [comm, rest] = [
        stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
        stat.slice(stat.lastIndexOf(')') + 2),
      ];
      if (comm === 'pg_ctl' && Number(rest.split(' ')[1]) === ppid) return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}

test('Ctrl-C while the embedded PostgreSQL stops: intake exits after it, nothing left running', async () => {
  p = await startIntakeProcess(
    'start',
    { INTAKE_DATA_DIR: dir, DATABASE_URL: '', NATS_URL: '', INTAKE_SHUTDOWN_TIMEOUT_MS: '10000' },
    { timeoutMs: 60_000, detached: true },
  );
  const pid = p.child.pid!;
  p.killGroup('SIGTERM');
  await waitFor('pg_ctl stop to run', () => pgCtlChildOf(pid), 15_000, 5);
  p.killGroup('SIGINT');
  const exit = await p.exited;
  const tail = p.logs
    .slice(-6)
    .map((l) => JSON.stringify(l))
    .join('\n');
  assert.equal(exit.signal, null);
  assert.equal(postmasterPid(dir), undefined, `the postmaster had stopped when intake exited\n${tail}`);
  assert.ok(
    p.logs.some((l) => l.msg === 'embedded PostgreSQL stopped'),
    `pg_ctl finished its stop rather than being killed by the Ctrl-C\n${tail}`,
  );
});
