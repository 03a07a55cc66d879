import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

/** Sends raw bytes and returns the raw response (status line, headers, body). */
function raw(url: string, bytes: string | Buffer): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), '127.0.0.1');
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(5000, () => {
      s.destroy();
      resolve(out);
    });
    s.end(bytes);
  });
}

const status = (rawResponse: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(rawResponse)?.[1]);
const bodyOf = (rawResponse: string) => rawResponse.slice(rawResponse.indexOf('\r\n\r\n') + 4);

describe('garbage in any parameter gets a small 4xx problem, never a 5xx', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp('garbage', { roles: ['api'] });
  });
  after(() => app.close());

  test('a valid message whose message holds a 130,000-element array is accepted, not a 500', async () => {
    const res = await app.post('/v1/messages', {
      ts: 1,
      sender: 's',
      message: { list: Array.from({ length: 130_000 }, (_, i) => i % 10) },
    });
    assert.equal(res.status, 202, await res.text());
  });

  test('a 130,000-element array of strings with a NUL is refused with 400, not a 500', async () => {
    const list = Array.from({ length: 130_000 }, () => 'x');
    list[129_999] = 'a\u0000b';
    const res = await app.post('/v1/messages', { ts: 1, sender: 's', message: { list } });
    await expectProblem(res, 400, 'INVALID_MESSAGE');
  });

  const dashes = '-'.repeat(36);
  const cursor = (s: string) => Buffer.from(s).toString('base64url');
  for (const [name, path] of [
    ['a cursor whose id is 36 dashes', `/v1/messages?cursor=${cursor(`2024-01-01T00:00:00.000Z|${dashes}`)}`],
    [
      'a cursor whose id is not a UUID',
      `/v1/messages?cursor=${cursor('2024-01-01T00:00:00.000Z|zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz')}`,
    ],
    [
      'a cursor date beyond what PostgreSQL stores',
      `/v1/messages?cursor=${cursor('+275000-01-01T00:00:00.000Z|01890a5d-ac96-774b-bcce-b302099a8057')}`,
    ],
    ['since far in the future', '/v1/messages?since=99999999999999'],
    ['until before year 1', '/v1/messages?until=-271821-04-20T00:00:00Z'],
    ['since as an ISO date PostgreSQL cannot hold', '/v1/messages?since=+275760-09-13T00:00:00.000Z'],
    ['sender with a NUL', '/v1/messages?sender=%00'],
    ['limit as text', '/v1/messages?limit=abc'],
    ['limit huge', '/v1/messages?limit=99999999999999999999999'],
    ['an unknown query parameter', '/v1/messages?bogus=1'],
  ] as const) {
    test(`${name} → 400 INVALID_REQUEST`, async () => {
      await expectProblem(await fetch(app.url + path), 400, 'INVALID_REQUEST');
    });
  }

  test('reveal of 36 dashes → 400 naming the id (not a UUID), not a 500', async () => {
    const p = await expectProblem(
      await fetch(`${app.url}/v1/messages/${dashes}/revealed`),
      400,
      'INVALID_REQUEST',
    );
    assert.deepEqual(
      p.errors?.map((e) => e.pointer),
      ['/id'],
    );
  });

  test('read of a malformed id → 400, of a well-formed non-v7 one → 404', async () => {
    await expectProblem(await fetch(`${app.url}/v1/messages/${dashes}`), 400, 'INVALID_REQUEST');
    const v4 = '0b5f4b8e-6c1d-4f7a-9e2b-3c4d5e6f7a8b';
    await expectProblem(await fetch(`${app.url}/v1/messages/${v4}`), 404, 'NOT_FOUND');
  });

  test('a bad percent-encoding in the path → 400 problem that does not echo the URL', async () => {
    const r = await raw(
      app.url,
      'GET /v1/subjects/ip/192.0.2.77%zz/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    assert.equal(status(r), 400, r);
    assert.match(r, /content-type: application\/problem\+json/i);
    const p = JSON.parse(bodyOf(r));
    assert.equal(p.code, 'INVALID_REQUEST');
    assert.doesNotMatch(r, /192\.0\.2\.77/);
  });

  test('a Content-Length that does not match the body → 400 INVALID_REQUEST, not INVALID_MESSAGE', async () => {
    const body = '{"ts":1,"sender":"s","message":{"a":1}}';
    const r = await raw(
      app.url,
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 5}\r\nConnection: close\r\n\r\n${body}`,
    );
    // Node waits for the missing bytes until the client ends its side, then reports an aborted body.
    assert.ok(status(r) === 400 || r === '', r);
    if (r) assert.equal(JSON.parse(bodyOf(r)).code, 'INVALID_REQUEST');
  });

  test('every subject route refuses a non-IPv4 subject with 400, echoing nothing', async () => {
    for (const bad of ['1.2.3.4.5', '::1', '%00', '999.1.1.1', 'a'.repeat(100)]) {
      const p = await expectProblem(
        await fetch(`${app.url}/v1/subjects/ip/${bad}/messages`),
        400,
        'INVALID_REQUEST',
      );
      assert.ok(!p.detail.includes(bad) || bad.length < 4);
    }
  });
});
