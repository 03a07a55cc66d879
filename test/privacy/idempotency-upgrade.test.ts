import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { newMessageId } from '../../src/contract/message-id.ts';
import { pruneIdempotencyKeys } from '../../src/store/queue-table.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * Idempotency-Key records written before the keyed fingerprint (Postgres queue): an older API still
 * running during a deploy writes the unkeyed `fingerprint` column. A retry against such a record is
 * still answered with its id (no body check: the unkeyed digest is not compared, nor kept), and the
 * hourly prune clears the unkeyed digest, which would give the IP back to a reader of the table.
 */
let app: TestApp;
let db: pg.Client;
before(async () => {
  app = await startTestApp('idem_upgrade');
  db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
});
after(async () => {
  await db.end();
  await app.close();
});

test('a record with an unkeyed fingerprint still answers a retry, and the prune clears the digest', async () => {
  const body = { ts: 1, sender: 'old', message: { a: 1 }, 'sent-from-ip': '192.0.2.3' };
  const earlier = newMessageId();
  const unkeyed = createHash('sha256').update(JSON.stringify(body)).digest('base64url');
  await db.query(`INSERT INTO intake.idempotency_keys (key, message_id, fingerprint) VALUES ($1, $2, $3)`, [
    'anonymous\nfrom-an-older-api',
    earlier,
    unkeyed,
  ]);
  const res = await app.post('/v1/messages', body, { 'idempotency-key': 'from-an-older-api' });
  assert.equal(res.status, 202);
  assert.equal(((await res.json()) as { id: string }).id, earlier);

  // As the API's own least-privilege role runs it every hour.
  await db.query('BEGIN');
  try {
    await db.query('SET LOCAL ROLE intake_api');
    await pruneIdempotencyKeys(db, 24);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK');
    throw err;
  }
  const r = await db.query(
    `SELECT fingerprint, message_id::text FROM intake.idempotency_keys WHERE key LIKE '%older-api'`,
  );
  assert.deepEqual(r.rows, [{ fingerprint: null, message_id: earlier }]);
});

test('a new record keeps a keyed fingerprint and the subject, and refuses the key with another body', async () => {
  const body = { ts: 1, sender: 'new', message: { a: 1 }, 'sent-from-ip': '192.0.2.4' };
  const first = await app.post('/v1/messages', body, { 'idempotency-key': 'k-new' });
  assert.equal(first.status, 202);
  const row = (
    await db.query(
      `SELECT fingerprint, fingerprint_mac, encode(ip_pseudonym, 'base64') AS sub FROM intake.idempotency_keys
       WHERE key = $1`,
      ['anonymous\nk-new'],
    )
  ).rows[0];
  assert.equal(row.fingerprint, null);
  assert.notEqual(row.fingerprint_mac, createHash('sha256').update(JSON.stringify(body)).digest('base64url'));
  const ex = (await (await fetch(`${app.url}/v1/subjects/ip/192.0.2.4/messages`)).json()) as {
    subject: { pseudonym: string };
  };
  assert.equal(row.sub, ex.subject.pseudonym);
  const again = await app.post('/v1/messages', body, { 'idempotency-key': 'k-new' });
  assert.equal(again.status, 202);
  const other = await app.post(
    '/v1/messages',
    { ...body, 'sent-from-ip': '192.0.2.5' },
    { 'idempotency-key': 'k-new' },
  );
  assert.equal(other.status, 422);
});
