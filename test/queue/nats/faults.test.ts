import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { startLoad } from '../../helpers/load.ts';
import {
  assertAllStoredOnce,
  consumerBacklog,
  message,
  post,
  startRole,
  storedCount,
  tempDir,
} from '../../helpers/nats-roles.ts';

/**
 * Faults on the JetStream pipeline with real processes: a worker SIGKILLed mid-batch, NATS killed and
 * restarted while clients post, intake started while NATS is down. Each ends with every id answered
 * `202` stored exactly once.
 */
let server: NatsServer;
let db: TestDatabase;
let api: IntakeProcess;
let worker: IntakeProcess;
const procs: IntakeProcess[] = [];
const names = uniqueStream('faults');
const dir = tempDir('nats-faults');
let env: Record<string, string>;

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_faults')]);
  env = {
    ...natsEnv(server, names),
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    // What a killed worker held comes back after this, so the test does not wait 30 s.
    NATS_ACK_WAIT_MS: '3000',
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  [api, worker] = await Promise.all([startRole('api', env, procs), startRole('worker', env, procs)]);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const onlyStatuses = (statuses: Map<number, number>, allowed: number[]) =>
  assert.deepEqual(
    [...statuses.keys()].filter((s) => !allowed.includes(s)),
    [],
    `unexpected statuses: ${JSON.stringify([...statuses])}`,
  );

test('a worker SIGKILLed in the middle of a batch loses nothing and duplicates nothing', async () => {
  const load = startLoad(api.url, { concurrency: 16, maxRequests: 8000, sender: 'kill-worker' });
  try {
    await waitFor('the worker storing', async () => (await storedCount(db.url)) > 500, 30_000);
    worker.kill('SIGKILL');
    await worker.exited;
    const held = await consumerBacklog(server.url, names.stream, names.consumer);
    assert.ok(held.ackPending > 0, 'the killed worker held unacknowledged envelopes');
    const before = load.result.accepted.length;
    worker = await startRole('worker', env, procs);
    await waitFor(
      'more messages accepted after the restart',
      () => load.result.accepted.length > before + 500,
      30_000,
    );
  } finally {
    await load.stop();
  }
  onlyStatuses(load.result.statuses, [202]);
  assert.equal(load.result.networkErrors, 0);
  await assertAllStoredOnce(db.url, load.result.accepted, 60_000, procs);
});

test('NATS killed and restarted under load: 503 quickly while down, never 202-then-lost, recovers', async () => {
  const node = server.nodes[0]!;
  const load = startLoad(api.url, { concurrency: 8, maxRequests: 20_000, sender: 'nats-restart' });
  let outage: Awaited<ReturnType<typeof post>>;
  try {
    await waitFor('load flowing', () => load.result.accepted.length > 300, 30_000);
    await node.kill('SIGKILL');
    outage = await post(api.url, message(1, 'during-outage'));
    await waitFor('/readyz 503 on api and worker', async () => {
      const [a, w] = await Promise.all([fetch(`${api.url}/readyz`), fetch(`${worker.url}/readyz`)]);
      return a.status === 503 && w.status === 503;
    });
    const refusedBefore = load.result.statuses.get(503) ?? 0;
    await waitFor(
      'clients refused during the outage',
      () => (load.result.statuses.get(503) ?? 0) > refusedBefore + 50,
    );
    await node.start();
    await waitFor('/readyz 200 again without restarting intake', async () => {
      const [a, w] = await Promise.all([fetch(`${api.url}/readyz`), fetch(`${worker.url}/readyz`)]);
      return a.status === 200 && w.status === 200;
    });
    const after = load.result.accepted.length;
    await waitFor('accepting again', () => load.result.accepted.length > after + 300, 30_000);
  } finally {
    await load.stop();
  }
  const errors = api.logs.filter((l) => l.level === 'error').slice(-3);
  assert.equal(outage.status, 503, `${JSON.stringify(outage.json)} ${JSON.stringify(errors)}`);
  assert.ok(outage.ms < 2000, `503 took ${Math.round(outage.ms)} ms`);
  assert.ok(Number(outage.retryAfter) > 0, 'Retry-After is set');
  onlyStatuses(load.result.statuses, [202, 503]);
  assert.equal(load.result.networkErrors, 0);
  await assertAllStoredOnce(db.url, load.result.accepted, 60_000, procs);
});

test('intake starts while NATS is down: alive, not ready, 503; ready once NATS is up', async () => {
  const node = server.nodes[0]!;
  await node.kill('SIGKILL');
  const late = await startRole('api', env, procs, { waitReady: false });
  try {
    await waitFor('/livez answering', async () => (await fetch(`${late.url}/livez`)).status === 200, 30_000);
    assert.equal((await fetch(`${late.url}/readyz`)).status, 503);
    const refused = await post(late.url, message(1, 'late'));
    assert.equal(refused.status, 503);
    assert.ok(refused.ms < 2000);
  } finally {
    await node.start();
  }
  await waitFor(
    'ready after NATS came up',
    async () => (await fetch(`${late.url}/readyz`)).status === 200,
    30_000,
  );
  const ok = await post(late.url, message(2, 'late'));
  assert.equal(ok.status, 202);
  await assertAllStoredOnce(db.url, [ok.json.id as string]);
});
