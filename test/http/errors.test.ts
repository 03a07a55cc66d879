import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.ts';

const ok = { ts: 1530228282, sender: 's', message: { a: 1 } };

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: Array<{ pointer: string; detail: string }>;
}

async function problem(res: Response, status: number, code: string): Promise<Problem> {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  const p = (await res.json()) as Problem;
  assert.equal(p.status, status);
  assert.equal(p.code, code);
  assert.match(p.type, /^urn:intake:problem:/);
  assert.ok(p.title.length > 0 && p.detail.length > 0);
  return p;
}

describe('HTTP errors are RFC 9457 problems with stable codes', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp('errors', { roles: ['api'], env: { INTAKE_BODY_LIMIT_BYTES: '4096' } });
  });
  after(() => app.close());

  test('invalid JSON → 400 INVALID_JSON without echoing the body', async () => {
    const p = await problem(await app.post('/v1/messages', '{"sent-from-ip": 1.2.3.4}'), 400, 'INVALID_JSON');
    assert.doesNotMatch(p.detail, /1\.2\.3\.4/);
  });

  test('empty body with JSON content type → 400', async () => {
    await problem(await app.post('/v1/messages', ''), 400, 'INVALID_JSON');
  });

  test('two JSON documents → 400', async () => {
    await problem(await app.post('/v1/messages', '{"a":1}{"b":2}'), 400, 'INVALID_JSON');
  });

  test('body over the limit → 413', async () => {
    const big = { ...ok, message: { a: 'x'.repeat(5000) } };
    await problem(await app.post('/v1/messages', big), 413, 'BODY_TOO_LARGE');
  });

  for (const type of [
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/xml',
    'application/problem+json',
  ]) {
    test(`content type ${type} → 415`, async () => {
      await problem(
        await app.post('/v1/messages', JSON.stringify(ok), { 'content-type': type }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
    });
  }

  test('no content type → 415', async () => {
    const res = await fetch(`${app.url}/v1/messages`, {
      method: 'POST',
      body: new Blob([JSON.stringify(ok)]),
    });
    await problem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('charset utf-8 is accepted, other charsets → 415', async () => {
    const good = await app.post('/v1/messages', ok, { 'content-type': 'application/json; charset=UTF-8' });
    assert.equal(good.status, 202);
    const bad = await app.post('/v1/messages', ok, { 'content-type': 'application/json; charset=latin1' });
    await problem(bad, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('unknown route → 404 problem', async () => {
    await problem(await fetch(`${app.url}/v2/nothing`), 404, 'NOT_FOUND');
  });

  test('malformed id → 400 naming it; unknown id → 404 (docs/errors.md)', async () => {
    const p = await problem(await fetch(`${app.url}/v1/messages/not-a-uuid`), 400, 'INVALID_REQUEST');
    assert.deepEqual(p.errors, [{ pointer: '/id', detail: 'path parameter must be a valid uuid' }]);
    await problem(
      await fetch(`${app.url}/v1/messages/01890a5d-ac96-774b-bcce-b302099a8057`),
      404,
      'NOT_FOUND',
    );
  });

  test('bad query parameters → 400 with the parameter named', async () => {
    const p = await problem(await fetch(`${app.url}/v1/messages?limit=0`), 400, 'INVALID_REQUEST');
    assert.ok(p.errors?.some((e) => e.pointer === '/limit'));
    await problem(await fetch(`${app.url}/v1/messages?cursor=garbage`), 400, 'INVALID_REQUEST');
    await problem(await fetch(`${app.url}/v1/messages?since=yesterday`), 400, 'INVALID_REQUEST');
  });

  test('Idempotency-Key longer than 255 characters → 400', async () => {
    const res = await app.post('/v1/messages', ok, { 'idempotency-key': 'k'.repeat(256) });
    await problem(res, 400, 'INVALID_REQUEST');
  });

  test('hostile inputs never produce a 5xx', async () => {
    const bodies = [
      '['.repeat(3000),
      `{"ts":1,"sender":"a","message":${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}}`,
      '{"ts":1e400,"sender":"a","message":{"a":1}}',
      '{"ts":1,"sender":"a","message":{"a":1},"ts":"x"}',
      '\u0000',
      '"\\ud800"',
      '{"constructor":{"prototype":{"polluted":true}}}',
      'null',
      'true',
      '123',
      '{"ts":1,"sender":"a","message":{"__proto__":{"polluted":true}}}',
    ];
    for (const body of bodies) {
      const res = await app.post('/v1/messages', body);
      assert.ok(res.status < 500 || res.status === 503, `${res.status} for ${body.slice(0, 40)}`);
      await res.arrayBuffer();
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
    const live = await fetch(`${app.url}/livez`);
    assert.equal(live.status, 200);
  });

  test('a request that is cut off mid-body does not hurt the server', async () => {
    const port = new URL(app.url).port;
    await new Promise<void>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/messages',
        headers: { 'content-type': 'application/json', 'content-length': '1000' },
      });
      req.on('error', () => resolve());
      req.write('{"ts":1,');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 50);
    });
    assert.equal((await fetch(`${app.url}/livez`)).status, 200);
  });
});
