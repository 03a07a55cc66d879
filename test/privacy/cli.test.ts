import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

let app: TestApp;
let env: NodeJS.ProcessEnv;
before(async () => {
  app = await startTestApp('piicli');
  // The same database and master key (in the data dir) as the running service.
  env = {
    ...process.env,
    DATABASE_URL: app.db.url,
    INTAKE_DATA_DIR: app.running.config.dataDir,
    INTAKE_ACTOR: 'alice',
    LOG_LEVEL: 'silent',
  };
});
after(() => app.close());

const intake = async (...args: string[]) =>
  JSON.parse((await run(process.execPath, [BIN, ...args], { env })).stdout);

test('intake pii reveal / export / erase and keys rotate, each audited with the operator', async () => {
  const res = await app.post('/v1/messages', {
    ts: 1,
    sender: 'cli',
    message: { a: 1 },
    'sent-from-ip': '100.64.0.1',
  });
  const { id } = (await res.json()) as { id: string };
  await waitFor('stored', async () => (await fetch(`${app.url}/v1/messages/${id}`)).status === 200);

  assert.equal((await intake('pii', 'reveal', id))['sent-from-ip'], '100.64.0.1');
  const ex = await intake('pii', 'export', '100.64.0.1');
  assert.deepEqual(
    ex.messages.map((m: { id: string }) => m.id),
    [id],
  );
  const rot = await intake('keys', 'rotate');
  assert.match(rot.rotated, /^dk-/);
  assert.deepEqual((await intake('pii', 'erase', '100.64.0.1')).erased, {
    messages: 1,
    dead_letters: 0,
    queued: 0,
    idempotency_keys: 0,
  });
  assert.equal((await fetch(`${app.url}/v1/messages/${id}`)).status, 404);

  const db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
  const log = await db.query('SELECT actor, action FROM intake.audit_log ORDER BY id');
  await db.end();
  assert.deepEqual(
    log.rows.map((r) => `${r.actor} ${r.action}`),
    ['cli:alice reveal', 'cli:alice export', 'cli:alice rotate-key', 'cli:alice erase'],
  );
  await assert.rejects(
    run(process.execPath, [BIN, 'pii', 'export', 'not-an-ip'], { env }),
    /not an IP address: not-an-ip \(expected dotted-decimal IPv4/,
  );
});
