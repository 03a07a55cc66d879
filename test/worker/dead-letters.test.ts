import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * A message that can never be stored must not block the rest: the batch is bisected, the poison
 * message retried with backoff and, after the attempt limit, moved to dead_letters with its reason.
 * "Can never be stored" is made real with a trigger that refuses one sender.
 */
describe('worker failure isolation and dead letters', () => {
  let app: TestApp;
  let db: pg.Client;
  before(async () => {
    app = await startTestApp('deadletters', { env: { INTAKE_WORKER_MAX_ATTEMPTS: '3' } });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    await db.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.sender = 'poison' THEN RAISE EXCEPTION 'poison message refused' USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  test('the poison message is dead-lettered, every other message of its batch is stored', async () => {
    const messages = Array.from({ length: 40 }, (_, i) => ({
      ts: i,
      sender: i === 17 ? 'poison' : 'good',
      message: { i },
    }));
    const res = await app.post('/v1/messages/batch', { messages });
    assert.equal(res.status, 202);
    const { items } = (await res.json()) as { items: Array<{ id: string }> };
    const poisonId = items[17]!.id;

    await waitFor('the good messages stored', async () => {
      const r = await db.query("SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'good'");
      return r.rows[0].n === 39;
    });
    const dead = await waitFor(
      'the poison message dead-lettered',
      async () =>
        (await db.query('SELECT id::text, reason, attempts, payload FROM intake.dead_letters')).rows[0],
      20_000,
    );
    assert.equal(dead.id, poisonId);
    assert.match(dead.reason, /poison message refused/);
    assert.equal(dead.attempts, 3);
    assert.equal(dead.payload.sender, 'poison');
    await waitFor(
      'queue empty',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
    );
    const text = await (await fetch(`${app.url}/metrics`)).text();
    assert.match(text, /^intake_messages_dead_lettered_total 1$/m);
    assert.match(text, /^intake_messages_stored_total 39$/m);
  });
});
