import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import pg from 'pg';
import { quietLog, waitFor } from '../../harness/db.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { commandNamed } from '../../src/commands/registry.ts';
import { loadConfig } from '../../src/config.ts';
import { uuidv7Time } from '../../src/contract/message-id.ts';
import { type Running, startIntake } from '../../src/runtime.ts';
import { pruneErasedMessages } from '../../src/store/message-status.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { startPgProxy } from '../helpers/pg-proxy.ts';
import { expectProblem } from '../helpers/problem.ts';

/**
 * GET /v1/messages/{id}/status against real PostgreSQL and both queues: the API runs without a worker
 * first, so a message is seen before it is stored, then a worker is started next to it.
 */
const A = 'status-a';
const B = 'status-b';
const NEVER = '0190a6e4-0000-7000-8000-000000000000';

interface Status {
  id: string;
  status: string;
  stored_at?: string | null;
  received_at?: string;
  attempts?: number;
  failed_at?: string;
  erased_at?: string;
  reason?: string;
  trace_id?: string | null;
}

const all = generateKey('all', ['ingest', 'read', 'privacy']);
const boundA = generateKey('bound-a', ['ingest', 'read'], [A]);
const ingestOnly = generateKey('ingest-only', ['ingest']);
const KEYS = JSON.stringify([all.entry, boundA.entry, ingestOnly.entry]);
const as = (key: string) => ({ authorization: `Bearer ${key}` });

function client(app: TestApp) {
  const send = async (sender: string, ip?: string) => {
    const body: Record<string, unknown> = { ts: 1, sender, message: { n: 1 } };
    if (ip) body['sent-from-ip'] = ip;
    const res = await app.post('/v1/messages', body, as(all.key));
    assert.equal(res.status, 202);
    return ((await res.json()) as { id: string }).id;
  };
  const status = async (id: string, key = all.key) => {
    const res = await fetch(`${app.url}/v1/messages/${id}/status`, { headers: as(key) });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Status;
  };
  const until = (id: string, want: string) =>
    waitFor(`${id} ${want}`, async () => {
      const s = await status(id);
      return s.status === want ? s : undefined;
    });
  const erase = async (ip: string) => {
    const res = await fetch(`${app.url}/v1/subjects/ip/${ip}`, { method: 'DELETE', headers: as(all.key) });
    assert.equal(res.status, 200);
    return (await res.json()) as { erased: Record<string, number> };
  };
  return { send, status, until, erase };
}

function startWorker(app: TestApp, env: Record<string, string> = {}): Promise<Running> {
  return startIntake(
    loadConfig(
      {
        DATABASE_URL: app.db.url,
        HOST: '127.0.0.1',
        PORT: '0',
        INTAKE_DATA_DIR: app.dataDir,
        INTAKE_SHUTDOWN_TIMEOUT_MS: '5000',
        ...env,
      },
      commandNamed('worker'),
    ),
    ['worker'],
    quietLog,
  );
}

describe('message status on the Postgres queue', () => {
  let app: TestApp;
  let worker: Running | undefined;
  let db: pg.Client;
  let c: ReturnType<typeof client>;
  before(async () => {
    app = await startTestApp('status_pg', { roles: ['api'], env: { INTAKE_API_KEYS: KEYS } });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    c = client(app);
  });
  after(async () => {
    await worker?.shutdown('test done');
    await db.end();
    await app.close();
  });

  test('queued -> stored; queued -> erased; stored -> erased; dead-lettered; unknown', async () => {
    const first = await c.send(A);
    const queuedThenErased = await c.send(A, '192.0.2.41');
    const q = await c.status(first);
    assert.deepEqual(
      { ...q, received_at: undefined, trace_id: undefined },
      { id: first, status: 'queued', attempts: 0, received_at: undefined, trace_id: undefined },
    );
    assert.equal(q.received_at, uuidv7Time(first).toISOString());
    // The trace intake started for the request (the client sent no traceparent): docs/tracing.md.
    assert.match(String(q.trace_id), /^[0-9a-f]{32}$/);

    // Erased while queued: the erasure deletes the queue row and records the id.
    const before = Date.now();
    assert.equal((await c.erase('192.0.2.41')).erased.queued, 1);
    const e1 = await c.status(queuedThenErased);
    assert.equal(e1.status, 'erased');
    assert.ok(Date.parse(e1.erased_at!) >= before - 1000, e1.erased_at);
    assert.deepEqual(Object.keys(e1).sort(), ['erased_at', 'id', 'status']);

    // A message that can never be stored (a trigger refuses its sender) is dead-lettered.
    await db.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.sender = 'status-poison' THEN RAISE EXCEPTION 'poison refused' USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
    const poison = await c.send('status-poison');
    const poisonErased = await c.send('status-poison', '192.0.2.44');

    worker = await startWorker(app, { INTAKE_WORKER_MAX_ATTEMPTS: '1' });
    const s = await c.until(first, 'stored');
    assert.ok(Date.parse(s.stored_at!) >= Date.parse(s.received_at!), JSON.stringify(s));
    assert.equal(s.received_at, q.received_at);

    const d = await c.until(poison, 'dead_lettered');
    assert.match(d.reason!, /poison refused/);
    assert.equal(d.attempts, 1);
    assert.ok(Date.parse(d.failed_at!) >= Date.parse(d.received_at!));
    // Dead-lettered, then erased with its subject: the dead letter goes, the id is recorded.
    await c.until(poisonErased, 'dead_lettered');
    assert.equal((await c.erase('192.0.2.44')).erased.dead_letters, 1);
    assert.equal((await c.status(poisonErased)).status, 'erased');

    // Stored, then erased: deleted with its subject, recorded in the same transaction.
    const storedThenErased = await c.send(A, '192.0.2.42');
    await c.until(storedThenErased, 'stored');
    assert.equal((await c.erase('192.0.2.42')).erased.messages, 1);
    assert.equal((await c.status(storedThenErased)).status, 'erased');
    // Erased when queued: never stored afterwards, still erased.
    assert.equal((await c.status(queuedThenErased)).status, 'erased');

    // The record holds the id, the sender and the time: nothing of the subject.
    const cols = await db.query(
      `SELECT column_name FROM information_schema.columns
       WHERE table_schema = 'intake' AND table_name = 'erased_messages' ORDER BY column_name`,
    );
    assert.deepEqual(
      cols.rows.map((r) => r.column_name),
      ['erased_at', 'id', 'sender'],
    );

    assert.deepEqual(await c.status(NEVER), { id: NEVER, status: 'unknown' });
    // A UUID of another version was never an intake id.
    const v4 = '3b241101-e2bb-4255-8caf-4136c566a962';
    assert.deepEqual(await c.status(v4), { id: v4, status: 'unknown' });
  });

  test('a malformed id is 400, a key without read scope 403, no key 401', async () => {
    await expectProblem(
      await fetch(`${app.url}/v1/messages/not-an-id/status`, { headers: as(all.key) }),
      400,
      'INVALID_REQUEST',
    );
    await expectProblem(
      await fetch(`${app.url}/v1/messages/${NEVER}/status`, { headers: as(ingestOnly.key) }),
      403,
      'FORBIDDEN',
    );
    assert.equal((await fetch(`${app.url}/v1/messages/${NEVER}/status`)).status, 401);
  });

  test("a key bound to A learns nothing of B's messages, whatever their status", async () => {
    // worker is running: B's stored, dead-lettered and erased messages, and a queued one of B
    // (inserted as a queue row the worker has not claimed yet: visible_at in the future).
    const stored = await c.send(B);
    await c.until(stored, 'stored');
    const erased = await c.send(B, '192.0.2.43');
    await c.until(erased, 'stored');
    await c.erase('192.0.2.43');
    await db.query(`UPDATE intake.dead_letters SET payload = jsonb_set(payload, '{sender}', $1)`, [
      JSON.stringify(B),
    ]);
    const dead = (await db.query('SELECT id::text FROM intake.dead_letters')).rows[0].id as string;
    const queued = '01900000-0000-7000-8000-00000000000b';
    await db.query(
      `INSERT INTO intake.queue (id, payload, visible_at) VALUES ($1, $2, now() + interval '1 hour')`,
      [queued, JSON.stringify({ v: 1, id: queued, sender: B, ts: 1, message: {}, priority: null })],
    );
    const seen: Record<string, string> = {};
    for (const [what, id] of Object.entries({ stored, erased, dead, queued })) {
      seen[what] = (await c.status(id)).status;
      const res = await fetch(`${app.url}/v1/messages/${id}/status`, { headers: as(boundA.key) });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!text.includes(B), text);
      assert.deepEqual(JSON.parse(text), { id, status: 'unknown' }, what);
    }
    assert.deepEqual(seen, { stored: 'stored', erased: 'erased', dead: 'dead_lettered', queued: 'queued' });
    // A's own message is shown to the bound key.
    const mine = await c.send(A);
    await c.until(mine, 'stored');
    assert.equal((await c.status(mine, boundA.key)).status, 'stored');
  });
});

test('erased-message records are pruned past the retention window, and only those', async (t) => {
  const app = await startTestApp('status_prune', { roles: ['api'] });
  const db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
  t.after(async () => {
    await db.end();
    await app.close();
  });
  const days = (await db.query('SELECT days FROM intake.retention_policy')).rows[0].days as number;
  await db.query(
    `INSERT INTO intake.erased_messages (id, sender, erased_at) VALUES
       ('01900000-0000-7000-8000-000000000001', 'old', now() - make_interval(days => $1 + 1)),
       ('01900000-0000-7000-8000-000000000002', 'kept', now() - make_interval(days => $1 - 1))`,
    [days],
  );
  assert.equal(await pruneErasedMessages(db), 1);
  const left = await db.query('SELECT sender FROM intake.erased_messages');
  assert.deepEqual(
    left.rows.map((r) => r.sender),
    ['kept'],
  );
});

/**
 * An API (no worker) whose database connections go through a TCP proxy the test can cut or hold, and
 * the id of one message it accepted (queued, as no worker runs).
 */
async function behindProxy(t: TestContext, name: string) {
  let proxy: Awaited<ReturnType<typeof startPgProxy>> | undefined;
  const app = await startTestApp(name, {
    roles: ['api'],
    databaseUrl: async (url) => {
      proxy = await startPgProxy(url);
      return proxy.url;
    },
  });
  t.after(async () => {
    await app.close();
    await proxy!.close();
  });
  const res = await app.post('/v1/messages', { ts: 1, sender: A, message: { n: 1 } });
  assert.equal(res.status, 202, await res.clone().text());
  const { id } = (await res.json()) as { id: string };
  return { app, proxy: proxy!, id };
}

test('a database that cannot be asked: 200 unknown with the reason, then answers again', async (t) => {
  const { app, proxy, id } = await behindProxy(t, 'status_db_down');
  const cut = proxy.cutAt('intake-api', 'intake.erased_messages WHERE id');
  const [lost] = await Promise.all([fetch(`${app.url}/v1/messages/${id}/status`), cut]);
  assert.equal(lost.status, 200);
  assert.deepEqual(await lost.json(), { id, status: 'unknown', reason: 'database_unavailable' });
  const again = await fetch(`${app.url}/v1/messages/${id}/status`);
  assert.equal(((await again.json()) as Status).status, 'queued');
});

test('a database that stops answering: 200 unknown with the reason, not a request held open', async (t) => {
  const { app, proxy, id } = await behindProxy(t, 'status_db_frozen');
  // The look-up reaches the server, whose answer never comes back (the connection stays open).
  const held = proxy.holdAt('intake-api', 'intake.erased_messages WHERE id');
  // Bounded so that a request held for good fails here instead of hanging the suite.
  const [frozen] = await Promise.all([
    fetch(`${app.url}/v1/messages/${id}/status`, { signal: AbortSignal.timeout(30_000) }),
    held,
  ]);
  assert.equal(frozen.status, 200);
  assert.deepEqual(await frozen.json(), { id, status: 'unknown', reason: 'database_unavailable' });
  // The held connection was dropped, not handed to the next look-up.
  const again = await fetch(`${app.url}/v1/messages/${id}/status`, { signal: AbortSignal.timeout(30_000) });
  assert.equal(((await again.json()) as Status).status, 'queued');
});

describe('message status on the JetStream queue', () => {
  let nats: NatsServer;
  let app: TestApp;
  let worker: Running | undefined;
  let c: ReturnType<typeof client>;
  let env: Record<string, string>;
  before(async () => {
    nats = await startNatsServer();
    env = natsEnv(nats, uniqueStream('status'));
    app = await startTestApp('status_nats', { roles: ['api'], env: { ...env, INTAKE_API_KEYS: KEYS } });
    c = client(app);
  });
  after(async () => {
    await worker?.shutdown('test done');
    await app.close();
    await nats.stop();
  });

  test('unknown until stored, then stored; dropped for a tombstone: erased', async () => {
    const id = await c.send(A);
    const dropped = await c.send(A, '192.0.2.51');
    // On the stream, not stored: JetStream cannot be asked cheaply, so no guess.
    assert.deepEqual(await c.status(id), { id, status: 'unknown' });
    // The erasure leaves a tombstone; the message is still on the stream.
    assert.equal((await c.erase('192.0.2.51')).erased.messages, 0);
    assert.deepEqual(await c.status(dropped), { id: dropped, status: 'unknown' });

    worker = await startWorker(app, env);
    const s = await c.until(id, 'stored');
    assert.ok(s.stored_at);
    // The worker dropped it for the tombstone and recorded it, with the erasure's time.
    const e = await c.until(dropped, 'erased');
    assert.ok(Date.parse(e.erased_at!) <= Date.now());
    assert.equal((await fetch(`${app.url}/v1/messages/${dropped}`, { headers: as(all.key) })).status, 404);
  });
});
