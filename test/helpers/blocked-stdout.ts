import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../harness/db.ts';
import { freePort, startIntakeProcess } from '../../harness/intake-process.ts';
import { WATCHDOG_GRACE_MS } from '../../src/ops/process-exit.ts';
import { type PipedProcess, spawnWithPipes } from './controlled-pipe.ts';
import { startLoad } from './load.ts';
import { postmasterPid, stopLeftoverPostgres } from './postmaster.ts';
import { assertAllStoredOnce } from './stored-once.ts';

/**
 * Issue 13, as a user meets it: `intake start` under load, its stdout and stderr on pipes the test
 * holds; the reader stops reading (the pipes fill) or goes away (EPIPE); then a signal to the whole
 * process group (Ctrl-C), or SIGTERM and then SIGINT (a supervisor's stop, then an impatient Ctrl-C).
 * The process must be gone within its shutdown deadline, leave no PostgreSQL behind, and after a
 * restart every id answered 202 must be stored exactly once.
 */

/** Clean-ups the test file runs in its `after` hook, last first. */
export type Cleanups = Array<() => Promise<void> | void>;

const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** Process tear-down on a busy 2-core machine, on top of the deadline. */
const MARGIN_MS = 2500;

function dataDir(cleanups: Cleanups): string {
  const dir = mkdtempSync(join(tmpdir(), 'intake-stdout-'));
  cleanups.push(async () => {
    await stopLeftoverPostgres(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

async function startWithPipes(dir: string, cleanups: Cleanups): Promise<{ p: PipedProcess; url: string }> {
  const port = await freePort();
  const p = spawnWithPipes(
    [BIN, 'start'],
    {
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      INTAKE_DATA_DIR: dir,
      DATABASE_URL: '',
      NATS_URL: '',
      INTAKE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    },
    // Its own process group, so the test signals the group as a terminal does.
    { detached: true },
  );
  cleanups.push(() => p.dispose());
  const url = `http://127.0.0.1:${port}`;
  let gone = false;
  p.exited.then(() => {
    gone = true;
  });
  await waitFor(
    'intake start to become ready',
    async () => {
      if (gone) throw new Error(`exited early: ${p.err.text().slice(-1000)} ${p.out.text().slice(-1000)}`);
      return (await fetch(`${url}/readyz`)).status === 200;
    },
    60_000,
    100,
  );
  return { p, url };
}

export async function blockedStdoutCase(
  cleanups: Cleanups,
  reader: 'stops reading' | 'goes away',
  signals: 'SIGINT' | 'SIGTERM then SIGINT',
): Promise<void> {
  const dir = dataDir(cleanups);
  const { p, url } = await startWithPipes(dir, cleanups);
  const load = startLoad(url, { concurrency: 16, maxRequests: 30_000 });
  await waitFor('some messages accepted', () => load.result.accepted.length >= 300, 30_000);

  if (reader === 'stops reading') {
    p.out.stopReading();
    p.err.stopReading();
  } else {
    p.out.closeReader();
    p.err.closeReader();
  }
  // One access line (~250 bytes) per request: 2000 more requests are several times what a pipe holds.
  const before = load.result.accepted.length;
  await waitFor('the pipe to fill', () => load.result.accepted.length >= before + 2000, 30_000);

  const t0 = Date.now();
  if (signals === 'SIGINT') {
    p.signalGroup('SIGINT');
  } else {
    p.signalGroup('SIGTERM');
    // Draining (readiness off, or the listener already closed), then the impatient second signal.
    await waitFor(
      'the drain to begin',
      async () =>
        (await fetch(`${url}/readyz`).then(
          (r) => r.status,
          () => 0,
        )) !== 200,
      SHUTDOWN_TIMEOUT_MS,
      20,
    ).catch(() => {});
    p.signalGroup('SIGINT');
  }
  // By itself by the deadline; the watchdog would SIGKILL a stuck process a little later.
  const exit = await p.exitWithin(SHUTDOWN_TIMEOUT_MS + WATCHDOG_GRACE_MS + MARGIN_MS);
  const stoppedInMs = Date.now() - t0;
  const result = await load.stop();
  console.log(
    `# reader ${reader}, ${signals}: accepted ${result.accepted.length}, read ${p.out.bytesRead()} bytes of stdout, exit ${JSON.stringify(exit)} after ${stoppedInMs} ms`,
  );
  assert.ok(exit, `intake start still running ${stoppedInMs} ms after ${signals} (pid ${p.child.pid})`);
  assert.equal(exit.signal, null, 'it exited by itself, not killed by a signal');
  if (signals === 'SIGINT') assert.equal(exit.code, 0, 'one Ctrl-C: a complete drain');
  else assert.ok(exit.code === 0 || exit.code === 130, `exit code ${exit.code}: 130 (second signal) or 0`);
  assert.equal(postmasterPid(dir), undefined, 'the embedded PostgreSQL was stopped, not left behind');

  const p2 = await startIntakeProcess(
    'start',
    { INTAKE_DATA_DIR: dir, DATABASE_URL: '', NATS_URL: '' },
    { timeoutMs: 60_000 },
  );
  cleanups.push(() => p2.stop(5000));
  // After a second signal the batch the worker had leased waits for its 30 s lease to expire.
  await assertAllStoredOnce(p2, result.accepted, { drainMs: 60_000 });
  await p2.stop();
}
