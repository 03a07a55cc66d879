import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { freePort, type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { tempDir } from '../helpers/nats-roles.ts';

/**
 * The privacy and admin routes are not on the port the public Ingress reaches (INTAKE_ADMIN_PORT,
 * src/http/admin-listener.ts): a real `intake api` with keys; on its public port those routes answer
 * 404 like an unknown path, even to a key that has the scope, and before authentication; on the admin
 * port they work and nothing else is served. Without the setting, one port serves everything.
 */

const IP = '10.9.8.7';
const ADMIN_PATHS = [
  `/v1/subjects/ip/${IP}/messages`,
  '/v1/dead-letters',
  '/v1/messages/01900000-0000-7000-8000-000000000000/revealed',
];

describe('INTAKE_ADMIN_PORT: privacy and admin routes on their own port only', () => {
  let db: TestDatabase;
  let dir: ReturnType<typeof tempDir>;
  let api: IntakeProcess;
  let adminUrl: string;
  const root = generateKey('root', ['ingest', 'read', 'privacy', 'admin']);
  const auth = { authorization: `Bearer ${root.key}` };
  const masterKey = randomBytes(32).toString('base64');
  const procs: IntakeProcess[] = [];

  before(async () => {
    db = await createTestDatabase('admin_port');
    dir = tempDir('admin-port');
    const adminPort = await freePort();
    adminUrl = `http://127.0.0.1:${adminPort}`;
    api = await startIntakeProcess('start', {
      DATABASE_URL: db.url,
      NATS_URL: '',
      INTAKE_DATA_DIR: join(dir.path, 'data'),
      INTAKE_API_KEYS: JSON.stringify([root.entry]),
      INTAKE_PII_MASTER_KEY: masterKey,
      INTAKE_ADMIN_PORT: String(adminPort),
    });
    procs.push(api);
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop(5000)));
    await db?.drop();
    dir?.remove();
  });

  test('the public port does not serve them: 404 as for an unknown path, with or without a key', async () => {
    const unknown = await fetch(`${api.url}/v1/no-such-route`, { headers: auth });
    const unknownBody = (await unknown.json()) as Record<string, unknown>;
    for (const path of ADMIN_PATHS) {
      for (const headers of [auth, {}]) {
        const r = await fetch(`${api.url}${path}`, { headers });
        assert.equal(r.status, 404, `${path}: ${r.status}`);
        const body = (await r.json()) as Record<string, unknown>;
        assert.equal(body.code, unknownBody.code, path);
        assert.equal(body.detail, unknownBody.detail, path);
      }
    }
    const erase = await fetch(`${api.url}/v1/subjects/ip/${IP}`, { method: 'DELETE', headers: auth });
    assert.equal(erase.status, 404);
    const replay = await fetch(`${api.url}/v1/dead-letters/replay`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(replay.status, 404);
  });

  test('the public port still serves ingest, reads and health', async () => {
    const r = await fetch(`${api.url}/v1/messages`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ ts: 1530228282, sender: 's', message: { a: 1 }, 'sent-from-ip': IP }),
    });
    assert.equal(r.status, 202, await r.clone().text());
    assert.equal((await fetch(`${api.url}/v1/messages?sender=s`, { headers: auth })).status, 200);
    assert.equal((await fetch(`${api.url}/readyz`)).status, 200);
  });

  test('the admin port serves them, authenticated as anywhere, and nothing else', async () => {
    const exported = await fetch(`${adminUrl}/v1/subjects/ip/${IP}/messages`, { headers: auth });
    assert.equal(exported.status, 200, await exported.clone().text());
    assert.equal((await fetch(`${adminUrl}/v1/dead-letters`, { headers: auth })).status, 200);
    assert.equal((await fetch(`${adminUrl}/v1/dead-letters`)).status, 401, 'keys still apply');
    for (const path of ['/v1/messages?sender=s', '/readyz', '/metrics'])
      assert.equal((await fetch(`${adminUrl}${path}`, { headers: auth })).status, 404, path);
  });

  test('without INTAKE_ADMIN_PORT one port serves everything, as before', async () => {
    const single = await startIntakeProcess('start', {
      DATABASE_URL: db.url,
      NATS_URL: '',
      INTAKE_DATA_DIR: join(dir.path, 'data-single'),
      INTAKE_API_KEYS: JSON.stringify([root.entry]),
      INTAKE_PII_MASTER_KEY: masterKey,
      INTAKE_MIGRATE_ON_START: 'false',
    });
    procs.push(single);
    const r = await fetch(`${single.url}/v1/subjects/ip/${IP}/messages`, { headers: auth });
    assert.equal(r.status, 200, await r.clone().text());
  });
});
