import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';

let tdb: TestDatabase;
let db: pg.Client;
before(async () => {
  tdb = await createTestDatabase('roles');
  db = new pg.Client({ connectionString: tdb.url });
  await db.connect();
});
after(async () => {
  await db.end();
  await tdb.drop();
});

const as = async (role: string, sql: string) => {
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL ROLE ${role}`);
    return await db.query(sql);
  } finally {
    await db.query('ROLLBACK');
  }
};

test('the worker role writes messages but cannot read key material or drop tables', async () => {
  await as('intake_worker', 'SELECT count(*) FROM intake.messages');
  await as('intake_worker', 'SELECT count(*) FROM intake.queue');
  await assert.rejects(as('intake_worker', 'SELECT * FROM intake.data_keys'), /permission denied/);
  await assert.rejects(as('intake_worker', 'DROP TABLE intake.messages'), /must be owner|permission denied/);
  await assert.rejects(as('intake_worker', 'DELETE FROM intake.messages'), /permission denied/);
});

test('the API role reads data keys and writes the audit log but cannot rewrite it or drop tables', async () => {
  await as('intake_api', 'SELECT count(*) FROM intake.data_keys');
  await as('intake_api', "INSERT INTO intake.audit_log (actor, action) VALUES ('t', 'export')");
  await assert.rejects(as('intake_api', 'DELETE FROM intake.audit_log'), /permission denied/);
  await assert.rejects(as('intake_api', 'DROP TABLE intake.queue'), /must be owner|permission denied/);
});

test('migrations are recorded and partitions exist around today', async () => {
  const v = await db.query('SELECT max(version)::int AS v FROM intake.schema_version');
  assert.ok(v.rows[0].v >= 2);
  const p = await db.query(
    "SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent WHERE c.relname = 'messages'",
  );
  assert.ok(p.rows[0].n >= 8, `${p.rows[0].n} partitions`);
  // The queue table churns: vacuumed after a fixed count of dead rows, not a fraction of its size.
  const q = await db.query("SELECT reloptions FROM pg_class WHERE oid = 'intake.queue'::regclass");
  assert.ok(q.rows[0].reloptions.includes('autovacuum_vacuum_scale_factor=0'), String(q.rows[0].reloptions));
});

test('grants are re-applied by every migrate run (roles created after the migrations still get them)', async () => {
  await db.query('REVOKE ALL ON intake.messages FROM intake_worker');
  await assert.rejects(as('intake_worker', 'SELECT count(*) FROM intake.messages'), /permission denied/);
  const { migrate } = await import('../../src/store/migrate.ts');
  const { quietLog } = await import('../../harness/db.ts');
  await migrate(tdb.url, quietLog);
  await as('intake_worker', 'SELECT count(*) FROM intake.messages');
});

test('intake runs as the least-privilege roles: api and worker processes each on their own role', async () => {
  const { startTestApp } = await import('../helpers/app.ts');
  // SET ROLE per process, as the separate login roles do in Kubernetes.
  const url = (role: string) => {
    const u = new URL(tdb.url);
    u.searchParams.set('options', `-c role=${role}`);
    return u.toString();
  };
  const api = await startTestApp('roles_api', { roles: ['api'], env: { DATABASE_URL: url('intake_api') } });
  const worker = await startTestApp('roles_worker', {
    roles: ['worker'],
    env: { DATABASE_URL: url('intake_worker') },
  });
  try {
    const res = await api.post('/v1/messages', {
      ts: 1,
      sender: 'roles',
      message: { a: 1 },
      'sent-from-ip': '192.0.2.5',
    });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    const { waitFor } = await import('../../harness/db.ts');
    await waitFor(
      'stored by the worker role',
      async () => (await fetch(`${api.url}/v1/messages/${id}`)).status === 200,
    );
    const erase = await fetch(`${api.url}/v1/subjects/ip/192.0.2.5`, { method: 'DELETE' });
    assert.equal(erase.status, 200);
  } finally {
    await worker.close();
    await api.close();
  }
});
