import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { type LoadResult, startLoad } from '../helpers/load.ts';
import { assertAllStoredOnce } from '../helpers/stored-once.ts';

/**
 * The embedded default as a user runs it: `intake start` with no DATABASE_URL and no NATS_URL, real
 * processes, real signals. Every id answered 202 must end up stored exactly once, whatever the stop.
 */
const dirs: string[] = [];
const procs: IntakeProcess[] = [];
after(async () => {
  for (const p of procs) await p.stop(5000);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'intake-e2e-'));
  dirs.push(d);
  return d;
}

async function start(dir: string, opts: { detached?: boolean } = {}): Promise<IntakeProcess> {
  // No DATABASE_URL/NATS_URL: the embedded PostgreSQL and the Postgres queue.
  const env = { INTAKE_DATA_DIR: dir, DATABASE_URL: '', NATS_URL: '', INTAKE_SHUTDOWN_TIMEOUT_MS: '15000' };
  const p = await startIntakeProcess('start', env, { timeoutMs: 60_000, ...opts });
  procs.push(p);
  return p;
}

async function loadThenSignal(
  p: IntakeProcess,
  signal: () => void,
): Promise<{ load: LoadResult; exit: { code: number | null } }> {
  const load = startLoad(p.url, { concurrency: 16, maxRequests: 20_000 });
  await waitFor('some messages accepted', () => load.result.accepted.length >= 300, 20_000);
  const t0 = Date.now();
  signal();
  const exit = await p.exited;
  const stoppedInMs = Date.now() - t0;
  const result = await load.stop();
  assert.ok(stoppedInMs < 15_000, `stopped within the shutdown timeout (${stoppedInMs} ms)`);
  const statuses = Object.fromEntries(result.statuses);
  console.log(
    `# load: sent ${result.sent}, accepted ${result.accepted.length}, statuses ${JSON.stringify(statuses)}, network errors ${result.networkErrors}, exit after ${stoppedInMs} ms`,
  );
  return { load: result, exit };
}

describe('embedded default, end to end', () => {
  test('fresh data dir: post → stored → read back; restart keeps the data', async () => {
    const dir = dataDir();
    const p1 = await start(dir);
    const res = await fetch(`${p1.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ts: '1530228282',
        sender: 'testy-test-service',
        message: { foo: 'bar' },
        'sent-from-ip': '1.2.3.4',
      }),
    });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await waitFor('stored', async () => (await fetch(`${p1.url}/v1/messages/${id}`)).status === 200);
    await p1.stop();
    assert.equal((await p1.exited).code, 0);

    const p2 = await start(dir);
    const again = await fetch(`${p2.url}/v1/messages/${id}`);
    assert.equal(again.status, 200, 'the message survived the restart');
    assert.equal(((await again.json()) as { sender: string }).sender, 'testy-test-service');
    await p2.stop();
  });

  test('a second intake on the same data dir is refused with a clear message', async () => {
    const dir = dataDir();
    const p1 = await start(dir);
    await assert.rejects(start(dir), /already running|another intake/);
    await p1.stop();
  });

  test('SIGTERM under continuous load: every 202 is stored exactly once after restart', async () => {
    const dir = dataDir();
    const p = await start(dir);
    const { load, exit } = await loadThenSignal(p, () => p.kill('SIGTERM'));
    assert.equal(exit.code, 0, 'clean exit');
    assert.ok(p.logs.some((l) => l.msg === 'shutdown complete'));
    const p2 = await start(dir);
    await assertAllStoredOnce(p2, load.accepted);
    await p2.stop();
  });

  test('Ctrl-C (SIGINT to the whole process group) under load loses nothing', async () => {
    const dir = dataDir();
    const p = await start(dir, { detached: true });
    const { load, exit } = await loadThenSignal(p, () => p.killGroup('SIGINT'));
    assert.equal(exit.code, 0, 'clean exit: the embedded PostgreSQL outlived the drain');
    assert.ok(!p.logs.some((l) => l.step === 'worker' || l.step === 'queue'), 'no shutdown step failed');
    const p2 = await start(dir);
    await assertAllStoredOnce(p2, load.accepted);
    await p2.stop();
  });
});
