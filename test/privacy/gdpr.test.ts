import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

interface Record_ {
  id: string;
  message: Record<string, unknown>;
  'sent-from-ip'?: string;
}

describe('privacy: pseudonyms, reveal, export, erasure with tombstones, retention, audit', () => {
  let app: TestApp;
  let db: pg.Client;
  before(async () => {
    app = await startTestApp('gdpr', { env: { INTAKE_PII_MESSAGE_FIELDS: 'email' } });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  const send = async (ip: string | undefined, extra: Record<string, unknown> = {}) => {
    const body: Record<string, unknown> = { ts: 1, sender: 'gdpr', message: { a: 1, ...extra } };
    if (ip) body['sent-from-ip'] = ip;
    const res = await app.post('/v1/messages', body);
    assert.equal(res.status, 202);
    return ((await res.json()) as { id: string }).id;
  };
  const stored = (id: string) =>
    waitFor(`${id} stored`, async () => {
      const r = await fetch(`${app.url}/v1/messages/${id}`);
      return r.status === 200 ? ((await r.json()) as Record_) : undefined;
    });

  test('equal IPs share a pseudonym; the ciphertexts differ (random IV)', async () => {
    const [a, b, c] = [await send('192.0.2.1'), await send('192.0.2.1'), await send('192.0.2.2')];
    for (const id of [a, b, c]) await stored(id);
    const r = await db.query(
      'SELECT id::text, ip_pseudonym, ip_ciphertext FROM intake.messages WHERE id = ANY($1::uuid[])',
      [[a, b, c]],
    );
    const by = new Map(r.rows.map((x) => [x.id, x]));
    assert.deepEqual(by.get(a).ip_pseudonym, by.get(b).ip_pseudonym);
    assert.notDeepEqual(by.get(a).ip_pseudonym, by.get(c).ip_pseudonym);
    assert.notDeepEqual(by.get(a).ip_ciphertext, by.get(b).ip_ciphertext);
  });

  test('declared PII fields inside message are redacted on read and revealed with the privacy scope', async () => {
    const id = await send('198.51.100.7', { email: 'ann@example.org' });
    const rec = await stored(id);
    assert.equal(rec.message.email, 'redacted');
    assert.equal(rec['sent-from-ip'], 'redacted');
    const raw = await db.query('SELECT message::text AS m FROM intake.messages WHERE id = $1', [id]);
    assert.doesNotMatch(raw.rows[0].m, /ann@example\.org/);
    const revealed = (await (await fetch(`${app.url}/v1/messages/${id}/revealed`)).json()) as Record_;
    assert.equal(revealed['sent-from-ip'], '198.51.100.7');
    assert.equal(revealed.message.email, 'ann@example.org');
    const log = await db.query(
      "SELECT actor, action FROM intake.audit_log WHERE action = 'reveal' AND detail->>'id' = $1",
      [id],
    );
    assert.equal(log.rows.length, 1);
  });

  test('export returns everything about one IP, nothing about others, and is audited', async () => {
    const mine = [await send('203.0.113.9'), await send('203.0.113.9')];
    const other = await send('203.0.113.10');
    for (const id of [...mine, other]) await stored(id);
    const res = await fetch(`${app.url}/v1/subjects/ip/203.0.113.9/messages`);
    assert.equal(res.status, 200);
    const ex = (await res.json()) as { subject: { 'sent-from-ip': string }; messages: Record_[] };
    assert.equal(ex.subject['sent-from-ip'], '203.0.113.9');
    assert.deepEqual(ex.messages.map((m) => m.id).sort(), [...mine].sort());
    assert.ok(ex.messages.every((m) => m['sent-from-ip'] === '203.0.113.9'));
    const audit = await db.query("SELECT subject FROM intake.audit_log WHERE action = 'export'");
    assert.equal(audit.rows.length, 1);
    assert.doesNotMatch(
      JSON.stringify(audit.rows),
      /203\.0\.113\.9/,
      'the audit log holds the pseudonym, not the IP',
    );
    assert.equal((await fetch(`${app.url}/v1/subjects/ip/not-an-ip/messages`)).status, 400);
  });

  test('erasure deletes the rows, reports counts, and a message still in flight is not stored afterwards', async () => {
    const gone = [await send('192.0.2.99'), await send('192.0.2.99')];
    for (const id of gone) await stored(id);
    const inflight = await send('192.0.2.99');
    const res = await fetch(`${app.url}/v1/subjects/ip/192.0.2.99`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    const { erased } = (await res.json()) as {
      erased: { messages: number; dead_letters: number; queued: number };
    };
    assert.equal(erased.messages + erased.queued, 3);
    await waitFor(
      'queue empty',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );
    for (const id of [...gone, inflight])
      assert.equal((await fetch(`${app.url}/v1/messages/${id}`)).status, 404);

    // Replaying the in-flight message (as a queue redelivery would) does not resurrect it.
    const r = await db.query(`SELECT count(*)::int AS n FROM intake.erasures`);
    assert.equal(r.rows[0].n, 1);
    const payload = {
      v: 1,
      id: inflight,
      received_at: new Date(Date.now() - 1000).toISOString(),
      ts: 1,
      sender: 'gdpr',
      message: { a: 1 },
      priority: null,
      ip: {
        pseudonym: (await db.query('SELECT encode(pseudonym, $1) AS p FROM intake.erasures', ['base64']))
          .rows[0].p,
        ciphertext: 'AAAA',
        key_id: 'x',
      },
    };
    await db.query('INSERT INTO intake.queue (id, payload) VALUES ($1, $2)', [
      inflight,
      JSON.stringify(payload),
    ]);
    await waitFor(
      'replayed message consumed',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );
    assert.equal(
      (await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = $1', [inflight])).rows[0].n,
      0,
    );

    // A message from the same IP received after the erasure is new data and is stored.
    const later = await send('192.0.2.99');
    await stored(later);
    const audit = await db.query("SELECT detail FROM intake.audit_log WHERE action = 'erase'");
    assert.equal(audit.rows.length, 1);
  });

  test('retention destroys old data keys, after which ciphertexts cannot be revealed by anyone', async () => {
    const id = await send('192.0.2.200');
    await stored(id);
    const { DataKeys, KeyDestroyedError } = await import('../../src/privacy/data-keys.ts');
    const { createIpProtector } = await import('../../src/privacy/ip-protector.ts');
    const { readFileSync } = await import('node:fs');
    const master = Buffer.from(
      readFileSync(`${app.running.config.dataDir}/pii-master.key`, 'utf8'),
      'base64',
    );
    const row = (await db.query('SELECT ip_ciphertext, ip_key_id FROM intake.messages WHERE id = $1', [id]))
      .rows[0];

    // Before retention: a fresh process (empty key cache) with the master key can reveal.
    const before = createIpProtector(master, new DataKeys(app.running.pool, master));
    assert.equal(
      await before.reveal(
        { ciphertext: row.ip_ciphertext, key_id: row.ip_key_id },
        { id, field: 'sent-from-ip', legacy: false },
      ),
      '192.0.2.200',
    );

    await db.query("UPDATE intake.data_keys SET created_at = now() - interval '400 days'");
    const destroyed = await new DataKeys(app.running.pool, master).destroyBefore(
      new Date(Date.now() - 30 * 86_400_000),
    );
    assert.ok(destroyed.includes(row.ip_key_id));

    // After: the same master key no longer opens it; the stored bytes are all that is left.
    const afterwards = createIpProtector(master, new DataKeys(app.running.pool, master));
    await assert.rejects(
      afterwards.reveal(
        { ciphertext: row.ip_ciphertext, key_id: row.ip_key_id },
        { id, field: 'sent-from-ip', legacy: false },
      ),
      KeyDestroyedError,
    );
  });
});
