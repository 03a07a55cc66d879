import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { ExitCode, WATCHDOG_GRACE_MS } from '../../src/ops/process-exit.ts';
import { type PipedProcess, type PipeState, spawnWithPipes } from '../helpers/controlled-pipe.ts';
import { FakeApiServer, kubeconfigFor } from '../pod-watcher/fake-apiserver.ts';

/**
 * Issue 13 for the long-running processes (`intake start` is test/e2e/stdout-blocked*.test.ts, `api`
 * test/e2e/log-drop.test.ts, the one-shot commands test/e2e/one-shot-exit.test.ts): `worker` and the
 * pod watcher exit 0 within their deadline while their stdout and stderr are full (the reader stopped
 * before they started) and blocking; a shutdown that overruns its deadline still exits, with code 70 and
 * one line naming the step.
 *
 * Blocking: once the process runs, the test clears O_NONBLOCK on the pipes' shared open file
 * descriptions, as any process sharing them may (libuv does it in every child spawned with inherited
 * stdio; on a fresh clone, tsx starts esbuild's service so, and a write to the full stderr then hung the
 * process until the watchdog killed it).
 */
const INTAKE = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
const POD_WATCHER = fileURLToPath(new URL('../../bin/pod-watcher.js', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** Process tear-down on a busy 2-core machine, on top of the deadline and the watchdog's grace. */
const MARGIN_MS = 2500;

// The processes share a database and a data directory (it holds the master key of the data keys).
let db: TestDatabase;
const dirs: string[] = [];
const dataDir = tempDir();
const procs: PipedProcess[] = [];
before(async () => {
  db = await createTestDatabase('exit_deadline');
});
after(async () => {
  for (const p of procs) await p.dispose();
  await db?.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'intake-exit-'));
  dirs.push(d);
  return d;
}

function spawnPiped(args: string[], env: Record<string, string>, stdio: { out: PipeState; err: PipeState }) {
  const p = spawnWithPipes(
    args,
    { LOG_LEVEL: 'info', HOST: '127.0.0.1', ...env },
    { ...stdio, holdWriteEnds: true },
  );
  procs.push(p);
  return p;
}

function intakeEnv(port: number): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    NATS_URL: '',
    PORT: String(port),
    INTAKE_DATA_DIR: dataDir,
    INTAKE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
  };
}

/**
 * SIGTERM, then the process must be gone by its deadline plus the watchdog's grace, by itself: exit 0
 * after a complete drain, or 70 if the drain itself overran on a starved machine (the deadline is the
 * promise; SIGKILL would mean the watchdog had to act).
 */
async function sigtermExitsInTime(p: PipedProcess, deadlineMs: number): Promise<void> {
  p.out.clearNonBlocking();
  p.err.clearNonBlocking();
  const t0 = Date.now();
  p.child.kill('SIGTERM');
  const exit = await p.exitWithin(deadlineMs + WATCHDOG_GRACE_MS + MARGIN_MS);
  const stderr = p.err.text().replace(/x+/g, '').slice(-1000);
  assert.ok(exit, `still running ${Date.now() - t0} ms after SIGTERM: ${stderr}`);
  assert.equal(exit.signal, null, `exited by itself: ${stderr}`);
  assert.ok(exit.code === 0 || exit.code === ExitCode.deadline, `exit code ${exit.code}: ${stderr}`);
}

describe('intake worker and the pod watcher exit within their deadline, stdout and stderr full and blocking', {
  concurrency: true,
}, () => {
  test('intake worker, stdout and stderr full and blocking: exits by itself on SIGTERM within its deadline', async () => {
    const port = await freePort();
    const p = spawnPiped([INTAKE, 'worker'], intakeEnv(port), { out: 'full', err: 'full' });
    await p.waitReady(`http://127.0.0.1:${port}`);
    await sigtermExitsInTime(p, SHUTDOWN_TIMEOUT_MS);
  });

  test('the pod watcher, stdout and stderr full and blocking: exits by itself on SIGTERM within its deadline', async (t) => {
    const fake = await FakeApiServer.start();
    t.after(() => fake.close());
    const kubeconfig = join(tempDir(), 'kubeconfig');
    writeFileSync(kubeconfig, kubeconfigFor(fake.url, 'exit-test'));
    const port = await freePort();
    const p = spawnPiped(
      [POD_WATCHER],
      {
        KUBECONFIG: kubeconfig,
        POD_NAME: 'exit-test',
        NAMESPACE: 'default',
        METRICS_PORT: String(port),
        LOG_LEVEL: 'debug',
      },
      { out: 'full', err: 'full' },
    );
    await p.waitReady(`http://127.0.0.1:${port}`);
    await sigtermExitsInTime(p, 15_000);
  });

  test('a shutdown past its deadline exits anyway: code 70, one stderr line naming the step', async () => {
    const port = await freePort();
    const env = { ...intakeEnv(port), INTAKE_SHUTDOWN_TIMEOUT_MS: '500', INTAKE_SHUTDOWN_DELAY_MS: '4000' };
    const p = spawnPiped([INTAKE, 'api'], env, { out: 'read', err: 'read' });
    await p.waitReady(`http://127.0.0.1:${port}`);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const exit = await p.exitWithin(500 + WATCHDOG_GRACE_MS + MARGIN_MS);
    assert.ok(exit, `still running ${Date.now() - t0} ms after SIGTERM`);
    assert.deepEqual(exit, { code: 70, signal: null });
    const lines = p.err
      .text()
      .split('\n')
      .filter((l) => l.includes('deadline'));
    assert.equal(lines.length, 1, p.err.text());
    assert.match(
      lines[0]!,
      /^intake: shutdown passed its 500 ms deadline: abandoned step "propagation delay"; skipped "http server", .*; exit code 70$/,
    );
  });
});
