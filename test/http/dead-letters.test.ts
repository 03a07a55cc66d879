import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

interface View {
  id: string;
  sender: string;
  reason: string;
  attempts: number;
  failed_at: string;
  'sent-from-ip'?: string;
  message: Record<string, unknown>;
}

/**
 * Dead letters as a feature: listed with filters and a cursor, read, replayed under their original id
 * (stored once, however often replayed), discarded; `admin` scope; every replay and discard audited.
 * "Cannot be stored" is made real with a trigger that refuses senders named poison-*.
 */
describe('dead letters: list, show, replay, discard', () => {
  let app: TestApp;
  let db: pg.Client;
  const admin = generateKey('ops', ['admin']);
  const ingest = generateKey('svc', ['ingest', 'read']);
  const as = (k: { key: string }) => ({ authorization: `Bearer ${k.key}` });
  const ids: Record<string, string> = {};

  before(async () => {
    app = await startTestApp('dlq', {
      env: {
        INTAKE_WORKER_MAX_ATTEMPTS: '1',
        INTAKE_API_KEYS: JSON.stringify([admin.entry, ingest.entry]),
      },
    });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    await db.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.sender LIKE 'poison-%' THEN RAISE EXCEPTION 'refused % for the test', NEW.sender USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
    for (const sender of ['poison-a', 'poison-b', 'poison-c', 'poison-d']) {
      const res = await app.post(
        '/v1/messages',
        { ts: 1, sender, message: { a: 1 }, 'sent-from-ip': '192.0.2.8' },
        as(ingest),
      );
      assert.equal(res.status, 202);
      ids[sender] = ((await res.json()) as { id: string }).id;
    }
    await waitFor(
      'four dead letters',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.dead_letters')).rows[0].n === 4,
    );
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  const get = (path: string, key = admin) => fetch(app.url + path, { headers: as(key) });
  const post = (path: string, body?: unknown, key = admin) =>
    fetch(app.url + path, {
      method: 'POST',
      headers: { ...as(key), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  test('only the admin scope may see or touch them', async () => {
    await expectProblem(await get('/v1/dead-letters', ingest), 403, 'FORBIDDEN');
    await expectProblem(
      await post(`/v1/dead-letters/${ids['poison-a']}/replay`, undefined, ingest),
      403,
      'FORBIDDEN',
    );
    await expectProblem(await fetch(`${app.url}/v1/dead-letters`), 401, 'UNAUTHENTICATED');
  });

  test('listed newest first with a cursor that neither skips nor repeats; filtered by sender and reason', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(`/v1/dead-letters?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200);
      const page = (await res.json()) as { items: View[]; next_cursor: string | null };
      seen.push(...page.items.map((i) => i.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual([...seen].sort(), Object.values(ids).sort());
    assert.equal(new Set(seen).size, 4);
    const bySender = (await (await get('/v1/dead-letters?sender=poison-b')).json()) as { items: View[] };
    assert.deepEqual(
      bySender.items.map((i) => i.id),
      [ids['poison-b']],
    );
    const byReason = (await (await get('/v1/dead-letters?reason=REFUSED%20poison-c')).json()) as {
      items: View[];
    };
    assert.deepEqual(
      byReason.items.map((i) => i.id),
      [ids['poison-c']],
    );
    await expectProblem(await get('/v1/dead-letters?cursor=garbage'), 400, 'INVALID_REQUEST');
  });

  test('one dead letter reads with its reason and attempts, the IP only as "redacted"', async () => {
    const res = await get(`/v1/dead-letters/${ids['poison-a']}`);
    assert.equal(res.status, 200);
    const v = (await res.json()) as View;
    assert.equal(v.sender, 'poison-a');
    assert.match(v.reason, /refused poison-a/);
    assert.equal(v.attempts, 1);
    assert.equal(v['sent-from-ip'], 'redacted');
    assert.doesNotMatch(JSON.stringify(v), /192\.0\.2\.8/);
    await expectProblem(await get('/v1/dead-letters/01890a5d-ac96-774b-bcce-b302099a8057'), 404, 'NOT_FOUND');
    await expectProblem(await get(`/v1/dead-letters/${'-'.repeat(36)}`), 400, 'INVALID_REQUEST');
  });

  test('replay stores the message once under its original id; replaying again is a 404', async () => {
    await db.query('DROP TRIGGER refuse_poison ON intake.messages');
    const res = await post(`/v1/dead-letters/${ids['poison-a']}/replay`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { replayed: [ids['poison-a']] });
    await expectProblem(await post(`/v1/dead-letters/${ids['poison-a']}/replay`), 404, 'NOT_FOUND');
    await waitFor(
      'replayed message stored',
      async () => (await get(`/v1/messages/${ids['poison-a']}`, ingest)).status === 200,
      20_000,
    );
    const n = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = $1', [
      ids['poison-a'],
    ]);
    assert.equal(n.rows[0].n, 1);
    const audit = await db.query(
      `SELECT actor, detail FROM intake.audit_log WHERE action = 'replay-dead-letter'`,
    );
    assert.equal(audit.rows[0].actor, 'api:ops');
    assert.deepEqual(audit.rows[0].detail.ids, [ids['poison-a']]);
  });

  test('replay by filter; discard deletes for good; both counted', async () => {
    const res = await post('/v1/dead-letters/replay', { sender: 'poison-b' });
    assert.deepEqual(await res.json(), { replayed: [ids['poison-b']] });
    const del = await fetch(`${app.url}/v1/dead-letters/${ids['poison-c']}`, {
      method: 'DELETE',
      headers: as(admin),
    });
    assert.deepEqual(await del.json(), { discarded: ids['poison-c'] });
    await expectProblem(await get(`/v1/dead-letters/${ids['poison-c']}`), 404, 'NOT_FOUND');
    await expectProblem(await post('/v1/dead-letters/replay', { bogus: 1 }), 400, 'INVALID_REQUEST');
    await waitFor(
      'replayed stored',
      async () => (await get(`/v1/messages/${ids['poison-b']}`, ingest)).status === 200,
      20_000,
    );
    const left = await db.query('SELECT id::text FROM intake.dead_letters');
    assert.deepEqual(
      left.rows.map((r) => r.id),
      [ids['poison-d']],
    );
    const text = await (await fetch(`${app.url}/metrics`)).text();
    assert.match(text, /^intake_dead_letters_replayed_total 2$/m);
    assert.match(text, /^intake_dead_letters_discarded_total 1$/m);
    // accepted + replayed = stored + dead-lettered (+ discarded ones stay counted as dead-lettered).
    const one = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    assert.equal(
      one('intake_messages_accepted_total') + one('intake_dead_letters_replayed_total'),
      one('intake_messages_stored_total') + one('intake_messages_dead_lettered_total'),
    );
  });
});
