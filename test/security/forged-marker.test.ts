import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * The client who sends intake's own ciphertext mark, and the attacker who writes to the database. A
 * `{"$pii": …}` object anywhere in `message` is refused with a pointer to it, on every ingest route, so
 * nothing a client sends is taken for a value intake encrypted. And every ciphertext is bound to its
 * message id, field and key id: one copied from another row or field (another person's IP or email)
 * is not revealed there, and the answer says so.
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

describe('a ciphertext moved in the database is not revealed', () => {
  const send = async (ip: string, email: string) => {
    const res = await app.post('/v1/messages', { ...body({ email, note: 'n' }), 'sent-from-ip': ip });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await waitFor(`${id} stored`, async () => (await fetch(`${app.url}/v1/messages/${id}`)).status === 200);
    return id;
  };
  const reveal = async (id: string) => {
    const res = await fetch(`${app.url}/v1/messages/${id}/revealed`);
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, unknown> & {
      message: Record<string, unknown>;
      not_revealed?: string[];
    };
  };

  test("another row's IP and email, copied onto the attacker's row, are not shown there", async () => {
    const victim = await send('203.0.113.77', 'victim@example.org');
    const attacker = await send('198.51.100.66', 'attacker@example.org');
    // As an attacker with write access to the database would: copy the victim's ciphertexts over.
    await db.query(
      `UPDATE intake.messages a SET ip_ciphertext = v.ip_ciphertext, ip_key_id = v.ip_key_id,
         message = jsonb_set(a.message, '{email}', v.message->'email')
       FROM intake.messages v WHERE a.id = $1 AND v.id = $2`,
      [attacker, victim],
    );
    const shown = await reveal(attacker);
    assert.equal(shown['sent-from-ip'], 'not revealed');
    assert.equal(shown.message.email, 'not revealed');
    assert.deepEqual(shown.not_revealed, ['/sent-from-ip', '/message/email']);
    assert.doesNotMatch(JSON.stringify(shown), /203\.0\.113\.77|victim@example\.org/);

    // The export of the attacker's subject says the same; the victim's own record still reveals.
    const ex = (await (await fetch(`${app.url}/v1/subjects/ip/198.51.100.66/messages`)).json()) as {
      messages: Array<{ id: string; not_revealed?: string[] }>;
    };
    assert.deepEqual(ex.messages.find((m) => m.id === attacker)?.not_revealed, [
      '/sent-from-ip',
      '/message/email',
    ]);
    assert.doesNotMatch(JSON.stringify(ex), /203\.0\.113\.77|victim@example\.org/);
    const own = await reveal(victim);
    assert.equal(own['sent-from-ip'], '203.0.113.77');
    assert.equal(own.message.email, 'victim@example.org');
    assert.equal(own.not_revealed, undefined);

    // The audit log records the refusal.
    const audit = await db.query(
      "SELECT detail FROM intake.audit_log WHERE action = 'reveal' AND detail->>'id' = $1",
      [attacker],
    );
    assert.deepEqual(audit.rows[0].detail.not_revealed, ['/sent-from-ip', '/message/email']);
  });

  test('a field moved to another field of the same row is not shown there either', async () => {
    const id = await send('192.0.2.44', 'moved@example.org');
    await db.query(
      `UPDATE intake.messages SET message = jsonb_set(message, '{note}', message->'email') WHERE id = $1`,
      [id],
    );
    const shown = await reveal(id);
    assert.equal(shown.message.email, 'moved@example.org');
    assert.equal(shown.message.note, 'not revealed');
    assert.deepEqual(shown.not_revealed, ['/message/note']);
  });

  test('data written before the binding (v1, no associated data) still reveals where intake wrote it', async () => {
    const id = await send('192.0.2.55', 'old@example.org');
    const row = (await db.query('SELECT ip_key_id FROM intake.messages WHERE id = $1', [id])).rows[0];
    // A v1 ciphertext as versions before the binding wrote it: iv || tag || ct under the same data key.
    const { DataKeys } = await import('../../src/privacy/data-keys.ts');
    const master = Buffer.from(readFileSync(`${app.dataDir}/pii-master.key`, 'utf8'), 'base64');
    const key = await new DataKeys(app.running.pool, master).get(row.ip_key_id);
    const v1 = (text: string) => {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      const ct = Buffer.concat([c.update(text, 'utf8'), c.final()]);
      return Buffer.concat([iv, c.getAuthTag(), ct]);
    };
    const legacyMark = (text: string) => ({
      $pii: { pseudonym: 'x', ciphertext: v1(text).toString('base64'), key_id: row.ip_key_id },
    });
    await db.query(
      `UPDATE intake.messages SET ip_ciphertext = $2,
         message = jsonb_set(jsonb_set(message, '{email}', $3), '{note}', $4) WHERE id = $1`,
      [id, v1('192.0.2.55'), legacyMark('"old@example.org"'), legacyMark('"forged@example.org"')],
    );
    const shown = await reveal(id);
    assert.equal(shown['sent-from-ip'], '192.0.2.55');
    assert.equal(shown.message.email, 'old@example.org');
    // Intake never wrote a v1 mark outside a declared field: one there was sent by a client.
    assert.equal(shown.message.note, 'not revealed');
    assert.deepEqual(shown.not_revealed, ['/message/note']);
  });
});
