import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { type PipedProcess, type PipeState, spawnWithPipes } from '../helpers/controlled-pipe.ts';

/**
 * Issue 13 for the one-shot commands: `intake migrate`, `doctor` and `smoke` end by themselves with the
 * same exit code whether their stdout and stderr are read, full (the reader stopped before they started)
 * or gone (EPIPE on every write). Their exit path is bounded by construction (the last lines get at most
 * EXIT_DRAIN_MS, then a watchdog kills a process that is still there: test/ops/process-exit.test.ts), so
 * an exit by itself, not by SIGKILL, is the proof; start-up time on a shared machine varies too much to
 * compare durations.
 */
const INTAKE = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

let db: TestDatabase;
const dataDir = mkdtempSync(join(tmpdir(), 'intake-one-shot-'));
const procs: PipedProcess[] = [];
before(async () => {
  db = await createTestDatabase('exit_one_shot');
});
after(async () => {
  for (const p of procs) await p.dispose();
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

function spawnPiped(args: string[], stdio: { out: PipeState; err: PipeState }): PipedProcess {
  const env = { LOG_LEVEL: 'info', DATABASE_URL: db.url, NATS_URL: '', INTAKE_DATA_DIR: dataDir };
  const p = spawnWithPipes(args, env, stdio);
  procs.push(p);
  return p;
}

describe('one-shot commands exit whatever state stdout is in', () => {
  test('intake migrate, doctor and smoke: same exit code whether stdout is read, full or gone', async () => {
    const closedPort = await freePort();
    const commands: Array<[string, string[]]> = [
      ['migrate', ['migrate']],
      ['doctor', ['doctor']],
      ['smoke', ['smoke', '--url', `http://127.0.0.1:${closedPort}`, '--timeout-ms', '500']],
    ];
    const run = async (args: string[], stdio: PipeState) => {
      const p = spawnPiped([INTAKE, ...args], {
        out: stdio,
        err: stdio,
      });
      const t0 = Date.now();
      // A process that never exits (a flush retrying for ever) fails here; a busy machine only slows them.
      const exit = await p.exitWithin(60_000);
      return { exit, ms: Date.now() - t0, err: p.err.text() };
    };
    await Promise.all(
      commands.map(async ([name, args]) => {
        const reference = await run(args, 'read');
        assert.equal(reference.exit?.signal, null, `${name} (${reference.ms} ms): ${reference.err}`);
        for (const stdio of ['full', 'gone'] as const) {
          const r = await run(args, stdio);
          assert.deepEqual(r.exit, reference.exit, `${name} with stdout ${stdio}: same exit, by itself`);
        }
      }),
    );
  });
});
