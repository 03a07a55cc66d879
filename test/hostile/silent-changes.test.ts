import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

const ok = { ts: 1530228282, sender: 's', message: { a: 1 } };

describe('nothing is changed or bypassed silently', () => {
  let app: TestApp;
  let db: pg.Client;
  const key = generateKey('limited', ['ingest', 'read']);
  before(async () => {
    const entry = { ...key.entry, rateLimit: { perSecond: 1, burst: 50 } };
    app = await startTestApp('silent', { env: { INTAKE_API_KEYS: JSON.stringify([entry]) } });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await app.close();
  });
  const auth = () => ({ authorization: `Bearer ${key.key}` });

  test('invalid UTF-8 in the body → 400 INVALID_JSON, nothing stored with U+FFFD', async () => {
    const bytes = Buffer.concat([
      Buffer.from('{"ts":1,"sender":"utf8-check","message":{"a":"'),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}}'),
    ]);
    const res = await fetch(`${app.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      body: bytes,
    });
    const p = await expectProblem(res, 400, 'INVALID_JSON');
    assert.match(p.detail, /UTF-8/);
    const r = await db.query(
      `SELECT count(*)::int AS n FROM intake.queue WHERE payload->>'sender' = 'utf8-check'`,
    );
    assert.equal(r.rows[0].n, 0);
  });

  test('the same Idempotency-Key with a different body → 422; the same body → the same id', async () => {
    const headers = { ...auth(), 'idempotency-key': 'reuse-1' };
    const first = await app.post('/v1/messages', ok, headers);
    assert.equal(first.status, 202);
    const { id } = (await first.json()) as { id: string };
    const again = await app.post('/v1/messages', ok, headers);
    assert.equal(again.status, 202);
    assert.equal(((await again.json()) as { id: string }).id, id);
    const changed = await app.post('/v1/messages', { ...ok, message: { a: 2 } }, headers);
    await expectProblem(changed, 422, 'IDEMPOTENCY_KEY_REUSED');
    await waitFor(
      'stored',
      async () => (await fetch(`${app.url}/v1/messages/${id}`, { headers: auth() })).status === 200,
    );
    const r = await db.query(`SELECT count(*)::int AS n FROM intake.messages WHERE message->>'a' = '2'`);
    assert.equal(r.rows[0].n, 0);
  });

  test('a number no double holds (1e400, -1e400, 400 digits) → 400 with its pointer, never stored as null', async () => {
    const big = `1${'0'.repeat(400)}`;
    const cases: Array<[string, string, string[]]> = [
      ['/v1/messages', '{"ts":1,"sender":"huge","message":{"a":1e400}}', ['/message/a']],
      ['/v1/messages', '{"ts":1,"sender":"huge","message":{"x":[1,{"y":-1e400}]}}', ['/message/x/1/y']],
      ['/v1/messages', `{"ts":1,"sender":"huge","message":{"a/b~":${big}}}`, ['/message/a~1b~0']],
      ['/v1/messages', '{"ts":1e400,"sender":"huge","message":{"a":1}}', ['/ts']],
      [
        '/v1/messages/batch',
        '{"messages":[{"ts":1,"sender":"huge","message":{"a":1}},{"ts":1,"sender":"huge","message":{"n":1E+400}}]}',
        ['/messages/1/message/n'],
      ],
      [
        '/v1/messages/batch?mode=partial',
        '{"messages":[{"ts":1,"sender":"huge","message":{"n":-2e999,"m":3e308}}]}',
        ['/messages/0/message/n', '/messages/0/message/m'],
      ],
    ];
    for (const [path, body, pointers] of cases) {
      const p = await expectProblem(await app.post(path, body, auth()), 400, 'INVALID_MESSAGE');
      assert.deepEqual(
        p.errors?.map((e) => e.pointer),
        pointers,
        body.slice(0, 80),
      );
    }
    // NDJSON answers per line: the line with the number is refused with its pointer, the other kept.
    const nd = await fetch(`${app.url}/v1/messages/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...auth() },
      body: '{"ts":1,"sender":"huge-nd","message":{"a":1}}\n{"ts":1,"sender":"huge","message":{"n":1e400}}\n',
    });
    assert.equal(nd.status, 207);
    const items = (
      (await nd.json()) as { items: Array<{ status: string; errors?: Array<{ pointer: string }> }> }
    ).items;
    assert.deepEqual(
      items.map((i) => [i.status, i.errors?.[0]?.pointer]),
      [
        ['accepted', undefined],
        ['rejected', '/message/n'],
      ],
    );
    // Large but finite numbers, and the text "1e400" in a string, are stored as sent.
    const fine = await app.post(
      '/v1/messages',
      '{"ts":1,"sender":"huge-ok","message":{"a":1.7e308,"s":"1e400"}}',
      auth(),
    );
    assert.equal(fine.status, 202);
    const r = await db.query(`SELECT count(*)::int AS n FROM intake.queue WHERE payload->>'sender' = 'huge'`);
    const stored = await db.query(`SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'huge'`);
    assert.equal(r.rows[0].n + stored.rows[0].n, 0, 'nothing of the refused messages was queued');
  });

  test('the token bucket charges a batch per message, not per request', async () => {
    const small = await app.post('/v1/messages/batch', { messages: Array(20).fill(ok) }, auth());
    assert.equal(small.status, 202);
    const remaining = Number(small.headers.get('ratelimit-remaining'));
    assert.ok(remaining <= 30, `remaining ${remaining} after 20 messages from a bucket of 50`);
    // 30 tokens left cannot pay for 40 messages; one request at a time would have passed.
    const big = await app.post('/v1/messages/batch', { messages: Array(40).fill(ok) }, auth());
    const p = await expectProblem(big, 429, 'RATE_LIMITED');
    assert.match(p.detail, /40 messages/);
    assert.ok(Number(big.headers.get('retry-after')) >= 9, `retry-after ${big.headers.get('retry-after')}`);
  });
});
