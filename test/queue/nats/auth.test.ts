import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';

/** A NATS server that requires a password: intake connects with NATS_USER/NATS_PASSWORD, not without. */
let nats: NatsServer;
let db: TestDatabase;
const procs: IntakeProcess[] = [];
before(async () => {
  nats = await startNatsServer(['--user', 'intake', '--pass', 's3cret-pw']);
  db = await createTestDatabase('nats_auth');
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await nats.stop();
  await db.drop();
});

test('with the right credentials intake is ready and accepts; without them it stays unready', async () => {
  const env = { ...natsEnv(nats, uniqueStream('auth')), DATABASE_URL: db.url, LOG_LEVEL: 'info' };
  const denied = await startIntakeProcess('api', env, { waitReady: false });
  procs.push(denied);
  await waitFor(
    'the refused connection logged',
    () => denied.logs.some((l) => /Authorization|AUTHORIZATION/i.test(JSON.stringify(l.err ?? ''))),
    20_000,
  );
  // It starts serving (unready) after waiting briefly for NATS; it never becomes ready.
  const status = await waitFor(
    'the API to answer',
    async () => (await fetch(`${denied.url}/readyz`)).status,
    20_000,
  );
  assert.equal(status, 503);
  const post = await fetch(`${denied.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ts: 1, sender: 'a', message: { a: 1 } }),
  });
  assert.equal(post.status, 503, 'never 202 without a queue');

  const ok = await startIntakeProcess('start', { ...env, NATS_USER: 'intake', NATS_PASSWORD: 's3cret-pw' });
  procs.push(ok);
  const res = await fetch(`${ok.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ts: 1, sender: 'a', message: { a: 1 } }),
  });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  await waitFor('stored', async () => (await fetch(`${ok.url}/v1/messages/${id}`)).status === 200);
});

test('half-configured credentials are refused at start with what to set', async () => {
  await assert.rejects(
    startIntakeProcess(
      'api',
      { NATS_URL: nats.url, NATS_USER: 'intake', DATABASE_URL: db.url },
      { timeoutMs: 10_000 },
    ),
    /NATS_USER and NATS_PASSWORD go together/,
  );
});
