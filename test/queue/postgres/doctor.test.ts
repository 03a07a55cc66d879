import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../harness/db.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { type Check, runDoctor } from '../../../src/commands/doctor-checks.ts';
import { commandNamed } from '../../../src/commands/registry.ts';
import { loadConfig } from '../../../src/config.ts';
import { createPool } from '../../../src/store/pool.ts';
import { enqueueMessages } from '../../../src/store/queue-table.ts';
import { tempDir } from '../../helpers/nats-roles.ts';

/**
 * `intake doctor` on the Postgres queue: the table against INTAKE_QUEUE_MAX_MESSAGES (beyond which
 * ingest answers 503 QUEUE_FULL), read through the queue's inspect().
 */
let db: TestDatabase;
let empty: TestDatabase;
const dir = tempDir('pg-doctor');

before(async () => {
  [db, empty] = await Promise.all([
    createTestDatabase('pg_doctor'),
    createTestDatabase('pg_doctor_empty', { migrate: false }),
  ]);
});
after(async () => {
  await db?.drop();
  await empty?.drop();
  dir.remove();
});

const doctor = (url: string) =>
  runDoctor(
    loadConfig(
      { DATABASE_URL: url, INTAKE_DATA_DIR: dir.path, INTAKE_QUEUE_MAX_MESSAGES: '4' },
      commandNamed('doctor'),
    ),
    url,
  );
const queueLine = (checks: Check[]) => checks.find((c) => c.name === 'queue');
const enqueue = async (n: number) => {
  const pool = createPool({ connectionString: db.url, max: 1, applicationName: 'test', onError: () => {} });
  try {
    await enqueueMessages(
      pool,
      Array.from({ length: n }, (_, i) => queuedMessage(i)),
    );
  } finally {
    await pool.end();
  }
};

test('the queue table: what it holds of its limit, and full at the limit', async () => {
  assert.deepEqual(queueLine(await doctor(db.url)), {
    name: 'queue',
    status: 'ok',
    detail: '0 messages waiting or leased in intake.queue, 0% of INTAKE_QUEUE_MAX_MESSAGES 4',
  });
  await enqueue(2);
  assert.deepEqual(queueLine(await doctor(db.url)), {
    name: 'queue',
    status: 'ok',
    detail: '2 messages waiting or leased in intake.queue, 50% of INTAKE_QUEUE_MAX_MESSAGES 4',
  });
  await enqueue(2);
  const full = queueLine(await doctor(db.url));
  assert.equal(full?.status, 'fail');
  assert.equal(
    full.detail,
    'full (4 messages waiting or leased in intake.queue; INTAKE_QUEUE_MAX_MESSAGES 4): ingest answers 503 QUEUE_FULL; ' +
      'see docs/runbooks.md#queue-full',
  );
});

test('an unmigrated database: the table is missing, said once migrations are', async () => {
  const checks = await doctor(empty.url);
  assert.equal(checks.find((c) => c.name === 'migrations')?.status, 'fail');
  assert.deepEqual(queueLine(checks), {
    name: 'queue',
    status: 'warn',
    detail: 'intake.queue does not exist yet (created by "intake migrate")',
  });
});

test('an unreachable database: only the database line fails, the queue in it is not tried again', async () => {
  const checks = await doctor('postgres://postgres@127.0.0.1:1/nothing');
  assert.equal(checks.find((c) => c.name === 'database')?.status, 'fail');
  assert.equal(queueLine(checks), undefined);
});
