import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ADMIN_URL, createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { partitionsAheadDays } from '../../src/store/partitions.ts';
import { INTAKE_BIN, runIntake } from '../helpers/cli.ts';
import { scrape, startRole, tempDir } from '../helpers/nats-roles.ts';

/**
 * `intake maintain` and `intake migrate` keep partitions ahead as the owner (migration 010); a worker
 * login may not, and is told so. Real processes against a real PostgreSQL.
 */
let tdb: TestDatabase;
let db: pg.Client;
const workerLogin = `intake_t_maint_${randomBytes(4).toString('hex')}`;
const env = (url: string): NodeJS.ProcessEnv => ({ ...process.env, DATABASE_URL: url, LOG_LEVEL: 'silent' });
const day = (offset: number) =>
  db
    .query<{ p: string }>(
      `SELECT 'messages_' || to_char((now() AT TIME ZONE 'UTC')::date + $1::int, 'YYYYMMDD') AS p`,
      [offset],
    )
    .then((r) => r.rows[0]!.p);
const exists = async (name: string) =>
  (await db.query('SELECT to_regclass($1) AS t', [`intake.${name}`])).rows[0].t !== null;

before(async () => {
  tdb = await createTestDatabase('maintain', { migrate: false });
  db = new pg.Client({ connectionString: tdb.url });
  await db.connect();
  await db.query(`CREATE ROLE ${workerLogin} LOGIN IN ROLE intake_worker`);
});
after(async () => {
  await db?.end();
  await tdb?.drop();
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  await c.query(`DROP ROLE IF EXISTS ${workerLogin}`).finally(() => c.end());
});

test('intake migrate keeps a week of partitions ahead', async () => {
  const r = await runIntake(env(tdb.url), ['migrate']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /partitions: \d+ created, 0 dropped/);
  assert.equal(await partitionsAheadDays(db), 7);
});

test('intake maintain as the owner fills the gaps ahead and drops what retention expired', async () => {
  const [five, six, old] = [await day(5), await day(6), await day(-40)];
  await db.query(`DROP TABLE intake.${five}, intake.${six}`);
  await db.query(
    `CREATE TABLE intake.${old} PARTITION OF intake.messages FOR VALUES FROM
       (((now() AT TIME ZONE 'UTC')::date - 40)::timestamp AT TIME ZONE 'UTC') TO
       (((now() AT TIME ZONE 'UTC')::date - 39)::timestamp AT TIME ZONE 'UTC')`,
  );
  assert.equal(await partitionsAheadDays(db), 4);
  const r = await runIntake(env(tdb.url), ['maintain']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), `partitions: 2 created, 1 dropped (${old})`);
  assert.equal(await partitionsAheadDays(db), 7);
  assert.equal(await exists(old), false);
});

test('intake maintain as a worker login refuses with what to do, and changes nothing', async () => {
  const seven = await day(7);
  await db.query(`DROP TABLE intake.${seven}`);
  const u = new URL(tdb.url);
  u.username = workerLogin;
  const r = await runIntake(env(u.toString()), ['maintain']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /may not run the partition functions: log in as the owner/);
  assert.equal(await exists(seven), false);
  assert.equal(await partitionsAheadDays(db), 6);
});

test('intake maintain --every runs a round at once, then stops cleanly on SIGTERM', async () => {
  const child = spawn(process.execPath, [INTAKE_BIN, 'maintain', '--every', '3600'], {
    env: env(tdb.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor('the first round', () => out.includes('partitions: 1 created'));
    assert.equal(await partitionsAheadDays(db), 7);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a worker logged in as the owner keeps partitions ahead in process (npm start, one process owns all)', async () => {
  const six = await day(6);
  await db.query(`DROP TABLE IF EXISTS intake.${six}`);
  assert.equal(await partitionsAheadDays(db), 5);
  const dir = tempDir('maintain-owner');
  const procs: IntakeProcess[] = [];
  try {
    const worker = await startRole('worker', { DATABASE_URL: tdb.url, INTAKE_DATA_DIR: dir.path }, procs);
    await waitFor('the worker recreating the partition', async () => (await partitionsAheadDays(db)) === 7);
    await waitFor('the gauge', async () => (await scrape(worker.url)).get('intake_partitions_ahead') === 7);
    assert.ok(!worker.logs.some((l) => /partition maintenance left to/.test(String(l.msg))));
  } finally {
    for (const p of procs) await p.stop(5000);
    dir.remove();
  }
});
