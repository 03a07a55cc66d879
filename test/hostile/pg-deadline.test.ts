import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { type PgProxy, startPgProxy } from '../helpers/pg-proxy.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * On the Postgres queue, every answer is true: 503 QUEUE_UNAVAILABLE only when nothing was committed,
 * 503 ACCEPTANCE_UNKNOWN when the COMMIT's outcome could not be learned, and a retry with the same
 * Idempotency-Key after that maps to one stored message. Before the fix, a locked queue table gave a
 * 503 and the message was stored 6 s later; a connection lost at COMMIT gave "not accepted" for a
 * message that was stored (3 ghosts in one run).
 */
describe('Postgres queue: 503 is true, an unknown outcome is said so', () => {
  let app: TestApp;
  let db: pg.Client;
  let proxy: PgProxy;
  before(async () => {
    app = await startTestApp('pgdeadline', {
      env: { INTAKE_PUBLISH_TIMEOUT_MS: '1000' },
      databaseUrl: async (url) => {
        proxy = await startPgProxy(url);
        return proxy.url;
      },
    });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await app.close();
    await proxy.close();
  });

  const stored = async (sender: string) =>
    (await db.query(`SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1`, [sender])).rows[0].n;
  const queued = async (sender: string) =>
    (await db.query(`SELECT count(*)::int AS n FROM intake.queue WHERE payload->>'sender' = $1`, [sender]))
      .rows[0].n;
  const drained = () =>
    waitFor(
      'queue drained',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );

  test('a locked queue table: 503 within the deadline, and the message is never stored', async () => {
    const locker = new pg.Client({ connectionString: app.db.url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE intake.queue IN ACCESS EXCLUSIVE MODE');
    const started = Date.now();
    const res = await app.post('/v1/messages', { ts: 1, sender: 'locked', message: { a: 1 } });
    const ms = Date.now() - started;
    await expectProblem(res, 503, 'QUEUE_UNAVAILABLE');
    assert.ok(res.headers.get('retry-after'));
    assert.ok(ms < 3000, `answered after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 1500)); // the lock outlives the answer, as in the report
    await locker.query('COMMIT');
    await locker.end();
    // A message that would have been stored by now is not.
    const ok = await app.post('/v1/messages', { ts: 1, sender: 'after-lock', message: { a: 1 } });
    assert.equal(ok.status, 202);
    await waitFor('later message stored', async () => (await stored('after-lock')) === 1);
    await drained();
    assert.equal(await stored('locked'), 0, 'a message answered 503 was stored');
  });

  test('the connection lost before COMMIT: 503 not accepted, never stored', async () => {
    // With an Idempotency-Key the group is a transaction (BEGIN, claim, INSERT, COMMIT).
    const cut = proxy.cutAt('intake-queue-producer', 'INSERT INTO intake.queue');
    const res = await app.post(
      '/v1/messages',
      { ts: 1, sender: 'cut-insert', message: { a: 1 } },
      { 'idempotency-key': 'cut-insert-1' },
    );
    await cut;
    await expectProblem(res, 503, 'QUEUE_UNAVAILABLE');
    await new Promise((r) => setTimeout(r, 1000));
    await drained();
    assert.equal((await stored('cut-insert')) + (await queued('cut-insert')), 0);
  });

  test('without an Idempotency-Key the INSERT is its own commit: lost after sending it is ACCEPTANCE_UNKNOWN, stored once', async () => {
    // One statement, one round trip: once it is sent, only the server's answer tells. The proxy
    // forwards the INSERT and then drops the connection, so the server commits it.
    const cut = proxy.cutAt('intake-queue-producer', 'INSERT INTO intake.queue');
    const res = await app.post('/v1/messages', { ts: 1, sender: 'cut-single', message: { a: 1 } });
    await cut;
    const p = await expectProblem(res, 503, 'ACCEPTANCE_UNKNOWN');
    assert.equal(p.ids?.length, 1);
    await waitFor('the sent message stored', async () => (await stored('cut-single')) === 1);
    await drained();
    const row = await db.query(`SELECT id FROM intake.messages WHERE sender = 'cut-single'`);
    assert.deepEqual(
      row.rows.map((r) => r.id),
      p.ids,
      'the id given with ACCEPTANCE_UNKNOWN is the stored one',
    );
  });

  test('the connection lost at COMMIT: ACCEPTANCE_UNKNOWN with the id; a keyed retry stores it once', async () => {
    const body = { ts: 1, sender: 'cut-commit', message: { a: 1 } };
    const headers = { 'idempotency-key': 'ghost-1' };
    const cut = proxy.cutAt('intake-queue-producer', 'COMMIT');
    const res = await app.post('/v1/messages', body, headers);
    await cut;
    const p = await expectProblem(res, 503, 'ACCEPTANCE_UNKNOWN');
    assert.match(p.detail, /same Idempotency-Key/);
    assert.equal(p.ids?.length, 1);
    const ghost = p.ids![0]!;
    // The server did commit: the message is on its way although the client was told nothing certain.
    await waitFor('ghost stored', async () => (await stored('cut-commit')) === 1);
    const retry = await app.post('/v1/messages', body, headers);
    assert.equal(retry.status, 202);
    assert.equal(((await retry.json()) as { id: string }).id, ghost);
    await drained();
    assert.equal(await stored('cut-commit'), 1, 'stored exactly once');
  });
});
