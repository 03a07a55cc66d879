import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { tempDir } from '../helpers/nats-roles.ts';

/**
 * Dead letters expire: a running `intake api` deletes those that failed longer ago than
 * INTAKE_DEAD_LETTER_RETENTION_DAYS (default and bound: INTAKE_RETENTION_DAYS), at start and hourly,
 * and keeps the rest.
 */
let tdb: TestDatabase;
let db: pg.Client;
const dir = tempDir('dl-retention');
let api: IntakeProcess | undefined;

before(async () => {
  tdb = await createTestDatabase('dl_retention');
  db = new pg.Client({ connectionString: tdb.url });
  await db.connect();
});
after(async () => {
  await api?.stop(5000);
  await db.end();
  await tdb.drop();
  dir.remove();
});

test('the API deletes dead letters past their retention and keeps the younger ones', async () => {
  const ages = [400, 40, 8, 6, 0];
  for (const days of ages) {
    await db.query(
      `INSERT INTO intake.dead_letters (id, payload, reason, attempts, failed_at)
       VALUES (gen_random_uuid(), $1, 'test', 5, now() - $2 * interval '1 day')`,
      [JSON.stringify({ sender: `age-${days}` }), days],
    );
  }
  const left = async () =>
    (
      await db.query<{ s: string }>(
        `SELECT payload->>'sender' AS s FROM intake.dead_letters ORDER BY failed_at`,
      )
    ).rows.map((r) => r.s);
  assert.equal((await left()).length, ages.length);
  api = await startIntakeProcess('api', {
    DATABASE_URL: tdb.url,
    INTAKE_DATA_DIR: dir.path,
    INTAKE_DEAD_LETTER_RETENTION_DAYS: '7',
  });
  await waitFor('the expired dead letters deleted', async () => (await left()).length === 2);
  assert.deepEqual(await left(), ['age-6', 'age-0']);
  assert.ok(
    api.logs.some((l) => l.msg === 'dead letters past retention deleted' && l.expired === 3),
    'logged with the count',
  );
});

test('the setting defaults to the message retention and may not exceed it', () => {
  assert.equal(loadConfig({ INTAKE_RETENTION_DAYS: '12' }).deadLetterRetentionDays, 12);
  assert.equal(loadConfig({}).deadLetterRetentionDays, 30);
  assert.throws(
    () => loadConfig({ INTAKE_RETENTION_DAYS: '30', INTAKE_DEAD_LETTER_RETENTION_DAYS: '31' }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /INTAKE_DEAD_LETTER_RETENTION_DAYS="31" is not valid: set a whole number from 1 to 30/.test(
        err.message,
      ),
  );
});
