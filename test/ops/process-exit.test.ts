import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../harness/db.ts';
import { WATCHDOG_GRACE_MS } from '../../src/ops/process-exit.ts';
import { controlledPipe, type PipedProcess, spawnWithPipes } from '../helpers/controlled-pipe.ts';

/**
 * The exit path of src/ops/process-exit.ts in real processes (test/fixtures/stuck-shutdown.ts) and real
 * signals: a shutdown step that never settles, and a main thread that never comes back (a synchronous
 * loop; a blocking write to a full pipe), where only the watchdog thread can still end the process.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TIMEOUT_MS = 1000;
/** The watchdog's grace after the deadline (process-exit.ts), plus start-up noise on a busy machine. */
const WATCHDOG_BY_MS = TIMEOUT_MS + WATCHDOG_GRACE_MS + 2000;

const procs: PipedProcess[] = [];
after(async () => {
  for (const p of procs) await p.dispose();
});

async function startStuck(mode: 'loop' | 'write' | 'slow', extraFds: number[] = []): Promise<PipedProcess> {
  const p = spawnWithPipes(
    ['--import', 'tsx', 'test/fixtures/stuck-shutdown.ts', mode],
    { SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS), LOG_LEVEL: 'info' },
    { cwd: ROOT, extraFds },
  );
  procs.push(p);
  await waitFor('the fixture to be ready', () => p.out.text().includes('"msg":"ready"'), 30_000);
  return p;
}

describe('the exit path keeps its deadline', { concurrency: true }, () => {
  test('a step that never settles: exit 70 at the deadline, one stderr line naming it', async () => {
    const p = await startStuck('slow');
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const exit = await p.exitWithin(TIMEOUT_MS + 3000);
    const ms = Date.now() - t0;
    assert.ok(exit, 'exited');
    assert.deepEqual(exit, { code: 70, signal: null });
    assert.ok(ms >= TIMEOUT_MS - 50, `not before the deadline (${ms} ms)`);
    // On a loaded machine stdout may also fall behind: the count of dropped lines is then its own line.
    const lines = p.err
      .text()
      .trim()
      .split('\n')
      .filter((l) => !/^stuck: \d+ log lines dropped: stdout did not take them in time$/.test(l));
    assert.deepEqual(lines, [
      'stuck: shutdown passed its 1000 ms deadline: abandoned step "stuck step"; skipped "last step"; exit code 70',
    ]);
  });

  test('main thread stuck in a synchronous loop: the watchdog kills the process, naming the step', async () => {
    const p = await startStuck('loop');
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    // Deaf to more signals, as the issue found: nothing on the main thread runs any more.
    p.child.kill('SIGTERM');
    const exit = await p.exitWithin(WATCHDOG_BY_MS);
    const ms = Date.now() - t0;
    assert.ok(exit, `still running ${ms} ms after SIGTERM`);
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.ok(ms >= TIMEOUT_MS + WATCHDOG_GRACE_MS - 100, `the watchdog waited for its deadline (${ms} ms)`);
    assert.equal(
      p.err.text(),
      `stuck: shutdown still running ${WATCHDOG_GRACE_MS} ms after its 1000 ms deadline, stuck in step "stuck step": killing the process (SIGKILL)\n`,
    );
  });

  test('main thread blocked in a write to a full pipe: the watchdog kills the process', async () => {
    const full = controlledPipe();
    full.fill();
    const p = await startStuck('write', [full.writeFd]);
    full.afterSpawn();
    p.child.kill('SIGTERM');
    const exit = await p.exitWithin(WATCHDOG_BY_MS);
    full.dispose();
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.match(p.err.text(), /stuck in step "stuck step"/);
  });
});
