import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * The client who sends intake's own ciphertext mark: a `{"$pii": …}` object anywhere in `message` is
 * refused with a pointer to it, on every ingest route, so nothing a client sends is taken for a value
 * intake encrypted (reveal and export would decrypt whatever such a mark points at).
 */
let app: TestApp;
let db: pg.Client;

before(async () => {
  app = await startTestApp('forged', { env: { INTAKE_PII_MESSAGE_FIELDS: 'email' } });
  db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
});
after(async () => {
  await db.end();
  await app.close();
});

const marker = { $pii: { ciphertext: 'AAAA', key_id: 'dk-20260101' } };
const body = (message: Record<string, unknown>) => ({ ts: 1, sender: 'forger', message });

interface Problem {
  status: number;
  code: string;
  errors: Array<{ pointer: string; detail: string }>;
}

describe('a client cannot send a ciphertext mark', () => {
  test('single message: 400 with the pointer of every $pii key, at any depth', async () => {
    const res = await app.post(
      '/v1/messages',
      body({ a: 1, email: marker, deep: { list: [{ x: marker }] }, $pii: { key_id: 'x' } }),
    );
    assert.equal(res.status, 400);
    const p = (await res.json()) as Problem;
    assert.equal(p.code, 'INVALID_MESSAGE');
    assert.deepEqual(p.errors.map((e) => e.pointer).sort(), [
      '/message/$pii',
      '/message/deep/list/0/x/$pii',
      '/message/email/$pii',
    ]);
    assert.match(p.errors[0]!.detail, /reserved/);
  });

  test('batch: all or nothing refuses the whole batch, pointing into the item', async () => {
    const res = await app.post('/v1/messages/batch', {
      messages: [body({ a: 1 }), body({ a: { b: marker } })],
    });
    assert.equal(res.status, 400);
    const p = (await res.json()) as Problem;
    assert.deepEqual(
      p.errors.map((e) => e.pointer),
      ['/messages/1/message/a/b/$pii'],
    );
  });

  test('partial batch and NDJSON: the item with the mark is rejected, the others accepted', async () => {
    const partial = await app.post('/v1/messages/batch?mode=partial', {
      messages: [body({ a: 1 }), body({ email: marker })],
    });
    assert.equal(partial.status, 207);
    const r = (await partial.json()) as {
      items: Array<{ status: string; errors?: Array<{ pointer: string }> }>;
    };
    assert.equal(r.items[0]!.status, 'accepted');
    assert.equal(r.items[1]!.status, 'rejected');
    assert.deepEqual(
      r.items[1]!.errors!.map((e) => e.pointer),
      ['/message/email/$pii'],
    );

    const ndjson = await fetch(`${app.url}/v1/messages/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: `${JSON.stringify(body({ a: [marker] }))}\n${JSON.stringify(body({ a: 2 }))}\n`,
    });
    assert.equal(ndjson.status, 207);
    const n = (await ndjson.json()) as typeof r;
    assert.deepEqual(
      n.items.map((i) => i.status),
      ['rejected', 'accepted'],
    );
    assert.deepEqual(
      n.items[0]!.errors!.map((e) => e.pointer),
      ['/message/a/0/$pii'],
    );
  });

  test('nothing with a mark was queued or stored', async () => {
    await waitFor(
      'queue drained',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );
    const r = await db.query(
      `SELECT count(*)::int AS n FROM intake.messages WHERE message::text LIKE '%AAAA%'`,
    );
    assert.equal(r.rows[0].n, 0);
  });
});
