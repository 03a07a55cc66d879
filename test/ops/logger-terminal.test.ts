import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../harness/db.ts';
import { WATCHDOG_GRACE_MS } from '../../src/ops/process-exit.ts';
import { type PipedProcess, spawnWithPipes } from '../helpers/controlled-pipe.ts';

/**
 * Logs to a terminal whose reader has stopped (a terminal emulator that is suspended, or Ctrl-S): the
 * terminal is a real pseudo-terminal from `script` (util-linux), stopped with SIGSTOP. The logging
 * process (test/fixtures/log-flood.ts) must drop lines rather than block, and exit on SIGTERM within
 * its deadline: a blocking write would leave its main thread, and so its signal handler, stuck.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = '/usr/bin/script';
const TIMEOUT_MS = 1000;

const dir = mkdtempSync(join(tmpdir(), 'intake-tty-'));
let p: PipedProcess | undefined;
after(async () => {
  if (p?.child.pid) {
    try {
      process.kill(p.child.pid, 'SIGCONT');
    } catch {
      // Already gone.
    }
  }
  await p?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function state(pid: number): string {
  try {
    // The third field of /proc/<pid>/stat is the state: Z once it has exited and waits to be reaped.
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0]!;
  } catch {
    return 'gone';
  }
}

test('a terminal that stopped reading costs log lines, not the exit', async (t) => {
  if (!existsSync(SCRIPT)) {
    assert.notEqual(process.env.CI, 'true', `${SCRIPT} (util-linux) is required in CI`);
    t.skip(`${SCRIPT} (util-linux) is not installed`);
    return;
  }
  const statusFile = join(dir, 'status.json');
  const command = `${process.execPath} --import tsx test/fixtures/log-flood.ts`;
  p = spawnWithPipes(
    ['-qfec', command, '/dev/null'],
    { STATUS_FILE: statusFile, SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS) },
    {
      command: SCRIPT,
      cwd: ROOT,
    },
  );
  const status = () => JSON.parse(readFileSync(statusFile, 'utf8')) as { pid: number; dropped: number };
  const { pid } = await waitFor('the logger to run', () => existsSync(statusFile) && status(), 30_000);

  process.kill(p.child.pid!, 'SIGSTOP');
  await waitFor('lines to be dropped: the terminal takes nothing', () => status().dropped > 0, 30_000);
  const t0 = Date.now();
  process.kill(pid, 'SIGTERM');
  await waitFor(
    'the logger to exit',
    () => ['Z', 'gone'].includes(state(pid)),
    TIMEOUT_MS + WATCHDOG_GRACE_MS + 2000,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (state ${state(pid)}, ${Date.now() - t0} ms after SIGTERM)`);
  });
  process.kill(p.child.pid!, 'SIGCONT');
  const exit = await p.exitWithin(30_000);
  assert.deepEqual(exit, { code: 0, signal: null }, 'script reports the logger exited 0 by itself');
});
