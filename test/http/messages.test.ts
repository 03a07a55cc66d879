import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

interface Stored {
  id: string;
  ts: number;
  sender: string;
  message: Record<string, unknown>;
  priority: number | null;
  received_at: string;
  'sent-from-ip'?: string;
}

describe('ingest → queue → worker → PostgreSQL → read API (Postgres queue)', () => {
  let app: TestApp;
  let db: pg.Client;
  before(async () => {
    app = await startTestApp('messages');
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  const readBack = (id: string) =>
    waitFor(`message ${id} stored`, async () => {
      const r = await fetch(`${app.url}/v1/messages/${id}`);
      return r.status === 200 ? ((await r.json()) as Stored) : undefined;
    });

  test('202 with id and Location, then the stored record reads back', async () => {
    const res = await app.post('/v1/messages', {
      ts: '1530228282',
      sender: 'testy-test-service',
      message: { foo: 'bar', baz: 'bang' },
      'sent-from-ip': '1.2.3.4',
      priority: 2,
    });
    assert.equal(res.status, 202);
    const { id, status } = (await res.json()) as { id: string; status: string };
    assert.equal(status, 'accepted');
    assert.equal(res.headers.get('location'), `/v1/messages/${id}`);
    const got = await readBack(id);
    assert.deepEqual(
      { ...got, received_at: undefined },
      {
        id,
        ts: 1530228282,
        sender: 'testy-test-service',
        message: { foo: 'bar', baz: 'bang' },
        priority: 2,
        'sent-from-ip': 'redacted',
        received_at: undefined,
        // The trace intake started for the request (no traceparent was sent), as the 202 named it.
        trace_id: res.headers.get('traceparent')?.split('-')[1],
      },
    );
    assert.ok(Math.abs(Date.parse(got.received_at) - Date.now()) < 60_000);
  });

  test('the plaintext IP is never written to the database', async () => {
    const res = await app.post('/v1/messages', {
      ts: 1,
      sender: 'pii',
      message: { a: 1 },
      'sent-from-ip': '10.9.8.7',
    });
    const { id } = (await res.json()) as { id: string };
    await readBack(id);
    const r = await db.query(
      "SELECT count(*)::int AS n FROM intake.messages WHERE message::text LIKE '%10.9.8.7%' OR sender LIKE '%10.9.8.7%' OR encode(ip_ciphertext, 'escape') LIKE '%10.9.8.7%'",
    );
    assert.equal(r.rows[0].n, 0);
    const row = await db.query(
      'SELECT ip_pseudonym, ip_ciphertext, ip_key_id FROM intake.messages WHERE id = $1',
      [id],
    );
    assert.equal(row.rows[0].ip_pseudonym.length, 32, 'HMAC-SHA-256 pseudonym');
    assert.ok(row.rows[0].ip_ciphertext.length > 28, 'iv + tag + ciphertext');
  });

  test('absent optional fields are stored as absent', async () => {
    const res = await app.post('/v1/messages', { ts: 5, sender: 'min', message: { a: 1 } });
    const { id } = (await res.json()) as { id: string };
    const got = await readBack(id);
    assert.equal(got.priority, null);
    assert.equal('sent-from-ip' in got, false);
  });

  test('Idempotency-Key: a retry returns the same id and is stored once', async () => {
    const body = { ts: 7, sender: 'idem', message: { a: 1 } };
    const key = { 'idempotency-key': 'order-42' };
    const first = (await (await app.post('/v1/messages', body, key)).json()) as { id: string };
    const again = await Promise.all([1, 2, 3].map(() => app.post('/v1/messages', body, key)));
    for (const r of again) {
      assert.equal(r.status, 202);
      assert.equal(((await r.json()) as { id: string }).id, first.id);
    }
    const other = (await (
      await app.post('/v1/messages', body, { 'idempotency-key': 'order-43' })
    ).json()) as { id: string };
    assert.notEqual(other.id, first.id);
    await readBack(first.id);
    await readBack(other.id);
    const r = await db.query("SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'idem'");
    assert.equal(r.rows[0].n, 2);
  });

  test('concurrent requests with the same new key get one id', async () => {
    const body = { ts: 8, sender: 'idem-race', message: { a: 1 } };
    const res = await Promise.all(
      Array.from({ length: 20 }, () => app.post('/v1/messages', body, { 'idempotency-key': 'race' })),
    );
    const ids = new Set(await Promise.all(res.map(async (r) => ((await r.json()) as { id: string }).id)));
    assert.equal(ids.size, 1);
    await readBack([...ids][0]!);
    const r = await db.query("SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'idem-race'");
    assert.equal(r.rows[0].n, 1);
  });

  test('batch: ids in order, all stored; one invalid item rejects the whole batch', async () => {
    const messages = Array.from({ length: 25 }, (_, i) => ({ ts: i, sender: 'batch', message: { i } }));
    const res = await app.post('/v1/messages/batch', { messages });
    assert.equal(res.status, 202);
    const { items } = (await res.json()) as { items: Array<{ id: string }> };
    assert.equal(items.length, 25);
    for (const [i, it] of items.entries()) assert.equal((await readBack(it.id)).message.i, i);

    const bad = [...messages.slice(0, 3), { ts: 'x', sender: 'batch-bad', message: {} }];
    const rej = await app.post('/v1/messages/batch', { messages: bad });
    assert.equal(rej.status, 400);
    const p = (await rej.json()) as { errors: Array<{ pointer: string }> };
    assert.deepEqual(p.errors.map((e) => e.pointer).sort(), ['/messages/3/message', '/messages/3/ts']);
    const tooMany = await app.post('/v1/messages/batch', {
      messages: Array.from({ length: 1001 }, () => messages[0]),
    });
    assert.equal(tooMany.status, 400);
  });

  test('query: newest first, filtered by sender, cursor-paginated without gaps or repeats', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await app.post('/v1/messages', { ts: i, sender: 'pager', message: { i } });
      ids.push(((await r.json()) as { id: string }).id);
    }
    await readBack(ids[6]!);
    await waitFor('all 7 stored', async () => {
      const r = await db.query("SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'pager'");
      return r.rows[0].n === 7;
    });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `${app.url}/v1/messages?sender=pager&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await (await fetch(q)).json()) as { items: Stored[]; next_cursor: string | null };
      seen.push(...page.items.map((m) => m.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [...ids].reverse());
  });

  test('metrics count received, accepted and rejected', async () => {
    await app.post('/v1/messages', { ts: 'bad', sender: 'm', message: { a: 1 } });
    const text = await (await fetch(`${app.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1]);
    assert.ok(value('intake_messages_received_total') > 0);
    assert.ok(value('intake_messages_accepted_total') > 0);
    assert.match(text, /intake_messages_rejected_total\{reason="invalid"\} [1-9]/);
    assert.match(text, /nodejs_heap_size_used_bytes/);
    assert.match(
      text,
      /intake_http_request_duration_seconds_bucket\{le="[^"]+",route="\/v1\/messages",method="POST"\}/,
    );
  });

  test('livez, readyz and the OpenAPI document', async () => {
    assert.equal((await fetch(`${app.url}/livez`)).status, 200);
    const ready = await fetch(`${app.url}/readyz`);
    assert.equal(ready.status, 200);
    const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/v1/messages']);
    assert.ok(doc.paths['/v1/messages/batch']);
    const docs = await fetch(`${app.url}/docs`, { redirect: 'follow' });
    assert.equal(docs.status, 200);
  });

  test('loss accounting: received = accepted + duplicate + rejected, accepted = stored once drained', async () => {
    await app.post('/v1/messages', { ts: 'x', sender: 'acct', message: {} });
    await app.post('/v1/messages/batch', {
      messages: [{ ts: 1, sender: 'acct', message: { a: 1 } }, { ts: 'x' }, { ts: 'y' }],
    });
    await app.post(
      '/v1/messages',
      { ts: 1, sender: 'acct', message: { a: 1 } },
      { 'idempotency-key': 'acct' },
    );
    await app.post(
      '/v1/messages',
      { ts: 1, sender: 'acct', message: { a: 1 } },
      { 'idempotency-key': 'acct' },
    );
    await waitFor(
      'queue drained',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );
    const text = await (await fetch(`${app.url}/metrics`)).text();
    const one = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    const rejected = [...text.matchAll(/^intake_messages_rejected_total\{reason="[^"]+"\} (\d+)/gm)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
    const received = one('intake_messages_received_total');
    assert.ok(rejected >= 4, `the invalid batch counts each of its 3 messages (${rejected})`);
    assert.equal(
      received,
      one('intake_messages_accepted_total') + one('intake_messages_duplicate_total') + rejected,
    );
    assert.equal(
      one('intake_messages_accepted_total'),
      one('intake_messages_stored_total') + one('intake_messages_dead_lettered_total'),
    );
  });
});
