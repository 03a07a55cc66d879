import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
const intake = (args: string[], env: Record<string, string>) =>
  run(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env } }).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
  );

describe('intake doctor and intake smoke', () => {
  let app: TestApp;
  let empty: TestDatabase;
  before(async () => {
    app = await startTestApp('ops');
    empty = await createTestDatabase('ops_empty', { migrate: false });
  });
  after(async () => {
    await app.close();
    await empty.drop();
  });

  test('doctor passes on a healthy deployment and lists what it checked', async () => {
    const r = await intake(['doctor'], {
      DATABASE_URL: app.db.url,
      INTAKE_DATA_DIR: app.running.config.dataDir,
    });
    assert.equal(r.code, 0, r.out);
    for (const name of ['config', 'database', 'migrations', 'partitions', 'pii keys'])
      assert.match(r.out, new RegExp(`^ok\\s+${name}`, 'm'));
    assert.match(r.out, /^WARN\s+api keys\s+none configured/m);
  });

  test('doctor fails on an unmigrated database and says what to run', async () => {
    const r = await intake(['doctor'], {
      DATABASE_URL: empty.url,
      INTAKE_DATA_DIR: app.running.config.dataDir,
    });
    assert.equal(r.code, 1);
    assert.match(
      r.out,
      /^FAIL\s+migrations\s+schema at version 0, this build needs \d+: run `intake migrate`/m,
    );
  });

  test('doctor fails when the master key does not open the data keys', async () => {
    const r = await intake(['doctor'], {
      DATABASE_URL: app.db.url,
      INTAKE_PII_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
    });
    assert.equal(r.code, 1);
    assert.match(r.out, /^FAIL\s+pii keys\s+cannot unwrap a data key/m);
  });

  test('doctor fails clearly when the database is unreachable', async () => {
    const r = await intake(['doctor'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x' });
    assert.equal(r.code, 1);
    assert.match(r.out, /^FAIL\s+database\s+cannot connect/m);
  });

  test('smoke proves a canary is stored end to end', async () => {
    const r = await intake(['smoke', '--url', app.url, '--json'], {});
    assert.equal(r.code, 0, r.out);
    const res = JSON.parse(r.out) as { ok: boolean; id: string; storedMs: number };
    assert.equal(res.ok, true);
    const db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    const row = await db.query('SELECT sender FROM intake.messages WHERE id = $1', [res.id]);
    await db.end();
    assert.equal(row.rows[0].sender, 'intake-smoke');
  });

  test('smoke fails when nothing answers', async () => {
    const r = await intake(['smoke', '--url', 'http://127.0.0.1:1', '--timeout-ms', '2000', '--json'], {});
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.out).ok, false);
  });
});
