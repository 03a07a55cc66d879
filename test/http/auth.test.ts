import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startIntakeProcess } from '../../harness/intake-process.ts';
import { generateKey, hashKey as generateKeyHash } from '../../src/auth/api-keys.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

const ok = { ts: 1, sender: 'svc-a', message: { a: 1 } };

describe('API keys: bearer auth, scopes, senders, token-bucket rate limits', () => {
  const ingest = generateKey('ingester', ['ingest'], ['svc-a']);
  const reader = generateKey('reader', ['read']);
  const limited = generateKey('limited', ['ingest']);
  limited.entry.rateLimit = { perSecond: 1, burst: 3 };
  let app: TestApp;
  const as = (key: string) => ({ authorization: `Bearer ${key}` });

  before(async () => {
    app = await startTestApp('auth', {
      roles: ['api'],
      env: { INTAKE_API_KEYS: JSON.stringify([ingest.entry, reader.entry, limited.entry]) },
    });
  });
  after(() => app.close());

  test('no key → 401 with WWW-Authenticate; wrong key → 401', async () => {
    const none = await app.post('/v1/messages', ok);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate')!, /^Bearer/);
    assert.equal(((await none.json()) as { code: string }).code, 'UNAUTHENTICATED');
    const wrong = await app.post('/v1/messages', ok, as('ik_not-a-real-key'));
    assert.equal(wrong.status, 401);
    const malformed = await app.post('/v1/messages', ok, { authorization: 'Basic dXNlcjpwYXNz' });
    assert.equal(malformed.status, 401);
  });

  test('the right key with the right scope is accepted', async () => {
    assert.equal((await app.post('/v1/messages', ok, as(ingest.key))).status, 202);
  });

  test('a key without the scope → 403', async () => {
    const res = await app.post('/v1/messages', ok, as(reader.key));
    assert.equal(res.status, 403);
    assert.match(((await res.json()) as { detail: string }).detail, /"ingest" scope/);
    const read = await fetch(`${app.url}/v1/messages?limit=1`, { headers: as(ingest.key) });
    assert.equal(read.status, 403);
    assert.equal((await fetch(`${app.url}/v1/messages?limit=1`, { headers: as(reader.key) })).status, 200);
  });

  test('a key restricted to senders → 403 for another sender, also inside a batch', async () => {
    const res = await app.post('/v1/messages', { ...ok, sender: 'svc-b' }, as(ingest.key));
    assert.equal(res.status, 403);
    const batch = await app.post(
      '/v1/messages/batch',
      { messages: [ok, { ...ok, sender: 'svc-b' }] },
      as(ingest.key),
    );
    assert.equal(batch.status, 403);
  });

  test('health, metrics and docs stay open', async () => {
    for (const p of ['/livez', '/readyz', '/metrics', '/openapi.json'])
      assert.equal((await fetch(app.url + p)).status, 200, p);
  });

  test('the token bucket allows the burst, then 429 with Retry-After and RateLimit headers', async () => {
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 5; i++) {
      last = await app.post('/v1/messages', ok, as(limited.key));
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [202, 202, 202, 429, 429]);
    assert.ok(Number(last!.headers.get('retry-after')) >= 1);
    assert.equal(last!.headers.get('ratelimit-limit'), '3');
    assert.equal(last!.headers.get('ratelimit-remaining'), '0');
    assert.equal(((await last!.json()) as { code: string }).code, 'RATE_LIMITED');
    // Other keys have their own bucket.
    assert.equal((await app.post('/v1/messages', ok, as(ingest.key))).status, 202);
  });
});

describe('auth configuration', () => {
  test('production refuses to start without keys, naming what to set', async () => {
    await assert.rejects(
      startIntakeProcess(
        'api',
        { NODE_ENV: 'production', DATABASE_URL: 'postgres://x@127.0.0.1:1/x' },
        { timeoutMs: 10_000 },
      ),
      /INTAKE_API_KEYS.*required when NODE_ENV=production/,
    );
  });

  test('a plain key where a hash belongs is refused', async () => {
    await assert.rejects(
      startIntakeProcess(
        'api',
        { INTAKE_API_KEYS: '[{"name":"a","hash":"secret","scopes":["ingest"]}]' },
        { timeoutMs: 10_000 },
      ),
      /hash must be "sha256:<64 hex>"/,
    );
  });

  test('`intake keys create` prints a key and the entry that admits it', () => {
    const bin = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
    const out = execFileSync(
      process.execPath,
      [bin, 'keys', 'create', '--name', 'ci', '--scopes', 'ingest,read'],
      { encoding: 'utf8' },
    );
    const key = /\n {2}(ik_\S+)\n/.exec(out)![1]!;
    const entry = JSON.parse(/\n {2}(\{.*\})/.exec(out)![1]!);
    assert.equal(entry.name, 'ci');
    assert.deepEqual(entry.scopes, ['ingest', 'read']);
    assert.equal(entry.hash, generateKeyHash(key));
    assert.ok(
      !out.includes(entry.hash.slice(7, 20)) || !entry.hash.includes(key),
      'the entry holds only a hash',
    );
  });
});
