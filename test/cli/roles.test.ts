import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { startIntakeProcess } from '../../harness/intake-process.ts';

/**
 * Each command as a real process, started with only what its role needs (the configuration side is in
 * test/config/load.test.ts): `start` migrates by default, `api` and `worker` refuse an old schema, and in
 * production the worker and the migration run without API keys or the PII master key.
 */
const schemaVersion = async (url: string) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c
      .query('SELECT max(version)::int AS v FROM intake.schema_version')
      .catch(() => undefined);
    return r?.rows[0]?.v ?? 0;
  } finally {
    await c.end();
  }
};

describe('commands start with what their role needs', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cli-roles-'));
  const dbs: TestDatabase[] = [];
  const emptyDb = async () => {
    const db = await createTestDatabase('roles_cli', { migrate: false });
    dbs.push(db);
    return db;
  };
  // Settings that belong to other roles, pointing at files that do not exist (as in the Job's pod).
  const foreign = {
    INTAKE_API_KEYS_FILE: join(dataDir, 'not-mounted/api-keys'),
    INTAKE_PII_MASTER_KEY_FILE: join(dataDir, 'not-mounted/master-key'),
  };
  let migrated: TestDatabase;
  before(async () => {
    migrated = await createTestDatabase('roles_cli_m');
    dbs.push(migrated);
  });
  after(async () => {
    for (const db of dbs) await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('`intake start` with DATABASE_URL migrates an empty database by default', async (t) => {
    const db = await emptyDb();
    const p = await startIntakeProcess('start', { DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir });
    t.after(() => p.stop());
    assert.ok((await schemaVersion(db.url)) >= 2);
  });

  test('`intake start` with INTAKE_MIGRATE_ON_START=false refuses the old schema', async () => {
    const db = await emptyDb();
    const p = await startIntakeProcess(
      'start',
      { DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir, INTAKE_MIGRATE_ON_START: 'false' },
      { waitReady: false },
    );
    assert.equal((await p.exited).code, 1);
    assert.match(
      p.stderr.join(''),
      /schema is at version 0, this build needs \d+: run `intake migrate` first/,
    );
  });

  for (const role of ['api', 'worker']) {
    test(`\`intake ${role}\` refuses an old schema instead of migrating it`, async () => {
      const db = await emptyDb();
      const p = await startIntakeProcess(
        role,
        { DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir },
        { waitReady: false },
      );
      assert.equal((await p.exited).code, 1);
      assert.match(p.stderr.join(''), /run `intake migrate` first/);
      assert.equal(await schemaVersion(db.url), 0);
    });
  }

  test('production: `intake migrate` needs only the database', async () => {
    const db = await emptyDb();
    const p = await startIntakeProcess(
      'migrate',
      { NODE_ENV: 'production', DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir, ...foreign },
      { waitReady: false },
    );
    const { code } = await p.exited;
    assert.equal(code, 0, p.stderr.join(''));
    assert.ok((await schemaVersion(db.url)) >= 2);
  });

  test('production: `intake worker` runs without API keys and without the PII master key', async (t) => {
    const p = await startIntakeProcess('worker', {
      NODE_ENV: 'production',
      DATABASE_URL: migrated.url,
      INTAKE_DATA_DIR: dataDir,
      ...foreign,
    });
    t.after(() => p.stop());
    const r = await fetch(`${p.url}/readyz`);
    assert.equal(r.status, 200);
  });

  test('production: `intake api` still refuses to start without keys, naming both', async () => {
    const p = await startIntakeProcess(
      'api',
      {
        NODE_ENV: 'production',
        DATABASE_URL: migrated.url,
        INTAKE_DATA_DIR: dataDir,
        INTAKE_PII_MASTER_KEY: randomBytes(32).toString('base64'),
      },
      { waitReady: false },
    );
    assert.equal((await p.exited).code, 78);
    assert.match(
      p.stderr.join(''),
      /INTAKE_API_KEYS \(or INTAKE_API_KEYS_FILE\) is required when NODE_ENV=production \(`intake api`/,
    );
  });
});
