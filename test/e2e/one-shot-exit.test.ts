import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT_DRAIN_MS } from '../../src/ops/process-exit.ts';
import { type PipedProcess, type PipeState, spawnWithPipes } from '../helpers/controlled-pipe.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { freePort } from '../helpers/intake-process.ts';

/**
 * Issue 13 for the one-shot commands: `intake migrate`, `doctor` and `smoke` end with the same exit code
 * whether their stdout and stderr are read, full (the reader stopped before they started) or gone (EPIPE
 * on every write), and a full or gone stdout delays their exit by at most the time given to the last lines.
 */
const INTAKE = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
const MARGIN_MS = 2500;

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
  test('intake migrate, doctor and smoke: same exit code whether stdout is read, full or gone, in time', async () => {
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
      // Before the fix a full stdout made them hang for ever; a busy machine makes them slow, not hung.
      const exit = await p.exitWithin(60_000);
      return { exit, ms: Date.now() - t0, err: p.err.text(), out: p.out.text().slice(-2000) };
    };
    await Promise.all(
      commands.map(async ([name, args]) => {
        const reference = await run(args, 'read');
        assert.equal(reference.exit?.signal, null, `${name} (${reference.ms} ms): ${reference.err}`);
        for (const stdio of ['full', 'gone'] as const) {
          const r = await run(args, stdio);
          assert.deepEqual(r.exit, reference.exit, `${name} with stdout ${stdio}: same exit`);
          // Slower than the reference by at most the time given to the last lines; start-up time varies
          // a lot on a shared machine, hence the factor.
          assert.ok(
            r.ms <= 2 * reference.ms + EXIT_DRAIN_MS + MARGIN_MS,
            `${name} with stdout ${stdio} took ${r.ms} ms (${reference.ms} ms when read)`,
          );
        }
      }),
    );
  });
});
