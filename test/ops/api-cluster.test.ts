import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createTestDatabase } from '../../harness/db.ts';
import { startIntakeProcess } from '../../harness/intake-process.ts';
import { apiProcesses } from '../helpers/api-cluster.ts';

/**
 * INTAKE_API_WORKERS=2: `intake api` runs two processes on one port under a supervising primary. Both
 * serve; a SIGTERM to the primary (what Kubernetes sends) drains both and the primary exits 0; a worker
 * process that dies takes the pod down (exit 1) instead of leaving it at half capacity.
 */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const body = JSON.stringify({
  ts: '1530228282',
  sender: 'cluster',
  message: { n: 1 },
  'sent-from-ip': '1.2.3.4',
});

test('two API processes serve one port, and a SIGTERM to the primary drains both', async (t) => {
  const db = await createTestDatabase('api_cluster');
  const dir = mkdtempSync(join(tmpdir(), 'api-cluster-'));
  t.after(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { DATABASE_URL: db.url, INTAKE_DATA_DIR: dir, INTAKE_API_WORKERS: '2' };
  const api = await startIntakeProcess('api', env, { timeoutMs: 60_000 });
  t.after(() => api.stop(1000));
  // Both processes come up (readiness answers as soon as one does).
  const kids = await apiProcesses(api);
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${api.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body,
    });
    assert.equal(r.status, 202);
  }
  api.kill('SIGTERM');
  const exit = await api.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.equal(api.logs.filter((l) => l.msg === 'shutdown complete').length, 2, 'each process drained');
  for (const pid of kids) assert.equal(alive(pid), false, `process ${pid} is gone`);
});

test('an API process that dies stops the others and the primary exits 1', async (t) => {
  const db = await createTestDatabase('api_cluster_die');
  const dir = mkdtempSync(join(tmpdir(), 'api-cluster-'));
  t.after(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const api = await startIntakeProcess(
    'api',
    { DATABASE_URL: db.url, INTAKE_DATA_DIR: dir, INTAKE_API_WORKERS: '2' },
    { timeoutMs: 60_000 },
  );
  t.after(() => api.stop(1000));
  const kids = await apiProcesses(api);
  process.kill(kids[0]!, 'SIGKILL');
  const exit = await api.exited;
  assert.equal(exit.code, 1);
  assert.ok(api.logs.some((l) => l.msg === 'API worker process exited; stopping the others'));
  assert.equal(alive(kids[1]!), false);
});
