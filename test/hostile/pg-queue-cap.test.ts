import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * The Postgres queue is bounded: with every worker down, publishes beyond INTAKE_QUEUE_MAX_MESSAGES
 * are refused with 503 QUEUE_FULL, the backlog is visible on the API's own /metrics, and nothing that
 * got a 202 is lost once a worker returns. Before the fix the table grew without bound and only
 * workers exported intake_queue_depth.
 */
test('Postgres queue at its cap: 503 QUEUE_FULL, depth on the API, every 202 stored once later', async (t) => {
  const api = await startTestApp('pgcap', { roles: ['api'], env: { INTAKE_QUEUE_MAX_MESSAGES: '20' } });
  const db = new pg.Client({ connectionString: api.db.url });
  await db.connect();
  t.after(async () => {
    await db.end();
    await api.close();
  });
  const accepted: string[] = [];
  let full: Response | undefined;
  await waitFor(
    'the queue to refuse',
    async () => {
      const res = await api.post('/v1/messages', { ts: 1, sender: 'cap', message: { n: accepted.length } });
      if (res.status === 202) accepted.push(((await res.json()) as { id: string }).id);
      else full = res;
      return full;
    },
    20_000,
    20,
  );
  const p = await expectProblem(full!, 503, 'QUEUE_FULL');
  assert.match(p.detail, /nothing was accepted/);
  assert.ok(Number(full!.headers.get('retry-after')) >= 1);
  assert.ok(accepted.length >= 20, `${accepted.length} accepted before the cap was seen`);
  // Sampled once a second: a few more than the cap may get in, never an unbounded number.
  assert.ok(accepted.length < 20 + 200, `${accepted.length} accepted with a cap of 20`);
  for (let i = 0; i < 20; i++) {
    const res = await api.post('/v1/messages', { ts: 1, sender: 'cap', message: { late: i } });
    assert.equal(res.status, 503);
    await res.arrayBuffer();
  }
  const text = await waitFor('the API exports the depth', async () => {
    const m = await (await fetch(`${api.url}/metrics`)).text();
    return /^intake_queue_depth (\d+)/m.exec(m)?.[1] === String(Math.min(accepted.length, 21))
      ? m
      : undefined;
  });
  assert.match(text, /intake_messages_rejected_total\{reason="queue_full"\} 2\d/);

  // A worker comes back: every 202 is stored exactly once, nothing refused is.
  const { startIntake } = await import('../../src/runtime.ts');
  const { loadConfig } = await import('../../src/config.ts');
  const { quietLog } = await import('../../harness/db.ts');
  const worker = await startIntake(
    loadConfig({ DATABASE_URL: api.db.url, HOST: '127.0.0.1', PORT: '0', INTAKE_DATA_DIR: api.dataDir }),
    ['worker'],
    quietLog,
  );
  t.after(() => worker.shutdown('test done'));
  await waitFor(
    'drained',
    async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
  );
  const r = await db.query<{ id: string; n: number }>(
    `SELECT id::text, count(*)::int AS n FROM intake.messages WHERE sender = 'cap' GROUP BY id`,
  );
  assert.equal(r.rows.length, accepted.length);
  assert.ok(r.rows.every((row) => row.n === 1));
  assert.deepEqual(new Set(r.rows.map((row) => row.id)), new Set(accepted));
});
