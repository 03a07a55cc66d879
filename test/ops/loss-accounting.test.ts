import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { needTool } from '../deploy/tools.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { runIntake } from '../helpers/cli.ts';

/**
 * The loss-accounting identity of docs/alerting.md, end to end on each queue, through dead letters and
 * replays by both the admin API and the CLI (a one-shot process Prometheus never scrapes):
 *
 *     accepted + replayed = stored + dead-lettered + erased in flight + still queued (0 here)
 *
 * Before replays were counted by the worker, the CLI's were counted nowhere: accepted 8 + replayed 1 (the
 * API's) against stored 8 + dead-lettered 3. On NATS a redelivered envelope repeats the replays in it that
 * were stored already (a nak covers the whole envelope), and those must not count twice; and a message
 * replayed a second time within the duplicate window was acknowledged as a duplicate of the first
 * replay and never delivered, while its dead letter was deleted: lost.
 */
for (const queue of ['postgres', 'nats'] as const) {
  const skip = queue === 'nats' ? needTool('nats-server', ['--version']) : undefined;
  describe(`loss accounting through dead letters and replays (${queue} queue)`, { skip }, () => {
    let app: TestApp;
    let db: pg.Client;
    let server: NatsServer | undefined;
    let queueEnv: Record<string, string> = {};

    before(async () => {
      if (queue === 'nats') {
        server = await startNatsServer();
        queueEnv = natsEnv(server, uniqueStream('loss_accounting'));
      }
      app = await startTestApp(`loss_accounting_${queue}`, {
        env: { INTAKE_WORKER_MAX_ATTEMPTS: '2', ...queueEnv },
      });
      db = new pg.Client({ connectionString: app.db.url });
      await db.connect();
      // "Cannot be stored" made real: a trigger refuses the senders listed in public.refused.
      await db.query(`
        CREATE TABLE public.refused (sender text PRIMARY KEY);
        CREATE FUNCTION refuse_listed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM public.refused r WHERE r.sender = NEW.sender) THEN
            RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22023';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_listed BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_listed();
        INSERT INTO public.refused VALUES ('poison-a'), ('poison-b');`);
    });
    after(async () => {
      await db?.end();
      await app?.close();
      await server?.stop();
    });

    const count = async (sql: string) => (await db.query<{ n: number }>(sql)).rows[0]!.n;
    const metrics = async () => {
      const text = await (await fetch(`${app.url}/metrics`)).text();
      const one = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
      return {
        accepted: one('intake_messages_accepted_total'),
        replayed: one('intake_dead_letters_replayed_total'),
        stored: one('intake_messages_stored_total'),
        deadLettered: one('intake_messages_dead_lettered_total'),
        erased: one('intake_messages_erased_in_flight_total'),
      };
    };
    const settled = (want: { stored: number; deadLettered: number }) =>
      waitFor(
        `stored ${want.stored}, dead-lettered ${want.deadLettered}`,
        async () => {
          const m = await metrics();
          return m.stored === want.stored && m.deadLettered === want.deadLettered ? m : undefined;
        },
        30_000,
      );
    const holds = (m: Awaited<ReturnType<typeof metrics>>) =>
      assert.equal(
        m.accepted + m.replayed,
        m.stored + m.deadLettered + m.erased,
        `accepted ${m.accepted} + replayed ${m.replayed} = stored ${m.stored} + dead-lettered ${m.deadLettered} + erased ${m.erased}`,
      );

    test('accepted + replayed = stored + dead-lettered, whoever replays and however often', async () => {
      const messages = Array.from({ length: 8 }, (_, i) => ({
        ts: i,
        sender: i === 2 ? 'poison-a' : i === 5 ? 'poison-b' : 'good',
        message: { i },
      }));
      const res = await app.post('/v1/messages/batch', { messages });
      assert.equal(res.status, 202);
      const { items } = (await res.json()) as { items: Array<{ id: string }> };
      const [a, b] = [items[2]!.id, items[5]!.id];
      holds(await settled({ stored: 6, deadLettered: 2 }));

      // Both replayed by the CLI in one command (so, on NATS, in one envelope) while only poison-a is
      // still refused: b is stored, a is retried (on NATS the envelope with b is redelivered) and
      // dead-lettered again. Each replay counts once.
      await db.query("DELETE FROM public.refused WHERE sender = 'poison-b'");
      const env = {
        ...process.env,
        DATABASE_URL: app.db.url,
        INTAKE_DATA_DIR: app.dataDir,
        INTAKE_ACTOR: 'loss-test',
        LOG_LEVEL: 'silent',
        ...queueEnv,
      };
      const both = await runIntake(env, ['dead-letters', 'replay', a, b]);
      assert.equal(both.code, 0, both.stderr);
      assert.deepEqual(JSON.parse(both.stdout).replayed.sort(), [a, b].sort());
      const m1 = await settled({ stored: 7, deadLettered: 3 });
      assert.equal(m1.replayed, 2);
      holds(m1);
      assert.equal(await count('SELECT count(*)::int AS n FROM intake.dead_letters'), 1);

      // Fixed: a replayed once more, by the admin API this time, within the NATS duplicate window of the
      // first replay: it is a new publish (its Nats-Msg-Id names the replay), not a dropped duplicate.
      await db.query('DELETE FROM public.refused');
      const api = await fetch(`${app.url}/v1/dead-letters/${a}/replay`, { method: 'POST' });
      assert.equal(api.status, 200, await api.text());
      const m2 = await settled({ stored: 8, deadLettered: 3 });
      assert.deepEqual(m2, { accepted: 8, replayed: 3, stored: 8, deadLettered: 3, erased: 0 });
      holds(m2);
      assert.equal(await count('SELECT count(*)::int AS n FROM intake.messages'), 8);
      assert.equal(await count('SELECT count(*)::int AS n FROM intake.dead_letters'), 0);
    });
  });
}
