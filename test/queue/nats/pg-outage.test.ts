import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { quietLog, waitFor } from '../../../harness/db.ts';
import { freePort, type IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../../src/store/embedded-postgres.ts';
import { migrate } from '../../../src/store/migrate.ts';
import { startLoad } from '../../helpers/load.ts';
import { assertAllStoredOnce, startRole, storedCount, tempDir, withDb } from '../../helpers/nats-roles.ts';

/**
 * PostgreSQL stopped for 10 s under load, on a private embedded PostgreSQL with a fixed port so it can
 * come back at the same address: NATS mode does not touch the database on the publish path, so the
 * API keeps answering 202; the worker backs off, then catches up; every 202 is stored exactly once.
 */
let nats: NatsServer;
let pg: EmbeddedPostgres | undefined;
let port: number;
const procs: IntakeProcess[] = [];
const dir = tempDir('nats-pg-outage');
const names = uniqueStream('pgdown');

before(async () => {
  port = await freePort();
  [nats, pg] = await Promise.all([startNatsServer(), startEmbeddedPostgres(dir.path, quietLog, { port })]);
  await migrate(pg.url, quietLog);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await pg?.stop();
  await nats?.stop();
  dir.remove();
});

test('PostgreSQL down for 10 s: the API keeps accepting, the worker catches up, nothing lost or doubled', async () => {
  const url = pg!.url;
  const env = {
    ...natsEnv(nats, names),
    DATABASE_URL: url,
    INTAKE_DATA_DIR: dir.path,
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  const [api] = await Promise.all([startRole('api', env, procs), startRole('worker', env, procs)]);
  const load = startLoad(api.url, { concurrency: 8, maxRequests: 40_000, sender: 'pg-down' });
  try {
    await waitFor('the worker storing', async () => (await storedCount(url)) > 200, 30_000);
    await pg!.stop();
    pg = undefined;
    const downAt = Date.now();
    const acceptedAtStop = load.result.accepted.length;
    // The outage itself is the scenario: 10 s of traffic with the database gone.
    await waitFor(
      '10 s of accepting without PostgreSQL',
      async () => {
        assert.equal((await fetch(`${api.url}/readyz`)).status, 200, 'the API stays ready');
        return Date.now() - downAt >= 10_000;
      },
      20_000,
      250,
    );
    assert.ok(load.result.accepted.length > acceptedAtStop + 200, 'messages were accepted during the outage');
    pg = await startEmbeddedPostgres(dir.path, quietLog, { port });
  } finally {
    await load.stop();
  }
  assert.deepEqual([...load.result.statuses.keys()], [202], JSON.stringify([...load.result.statuses]));
  assert.equal(load.result.networkErrors, 0);
  await assertAllStoredOnce(url, load.result.accepted, 90_000, procs);
  // The outage did not count as failed attempts: nothing was dead-lettered for it.
  const dead = await withDb(
    url,
    async (c) => (await c.query('SELECT count(*)::int AS n FROM intake.dead_letters')).rows[0].n,
  );
  assert.equal(dead, 0);
});
