import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { freePort, type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { IntakeClient, IntakeError, type Message } from '../../src/client/index.ts';
import {
  message as anyMessage,
  assertAllStoredOnce,
  startRole,
  storedCount,
  tempDir,
  withDb,
} from '../helpers/nats-roles.ts';

/**
 * The client library (src/client) against a real intake: what it sends, what it retries and what it
 * does not, and the promise it exists for: with NATS crashing and the API killed mid-request, every
 * message a caller handed to it is stored exactly once.
 */

const message = (n: number, sender?: string) => anyMessage(n, sender) as unknown as Message;

/** A fetch that records every request it passes on (method, path, headers, body bytes). */
function recordingFetch() {
  const seen: Array<{ path: string; headers: Headers; body: Buffer }> = [];
  const f: typeof fetch = async (input, init) => {
    const body = init?.body ? Buffer.from(init.body as Uint8Array | string) : Buffer.alloc(0);
    seen.push({ path: new URL(String(input)).pathname, headers: new Headers(init?.headers), body });
    return fetch(input, init);
  };
  return { fetch: f, seen };
}

describe('client against intake on the Postgres queue', () => {
  let db: TestDatabase;
  let intake: IntakeProcess;
  const procs: IntakeProcess[] = [];
  const dir = tempDir('client');

  before(async () => {
    db = await createTestDatabase('client_pg');
    intake = await startRole('start', { DATABASE_URL: db.url, INTAKE_DATA_DIR: dir.path }, procs);
  });
  after(async () => {
    for (const p of procs) await p.stop(5000);
    await db?.drop();
    dir.remove();
  });

  test('send, sendBatch and enqueue answer with the ids that are then stored', async () => {
    const rec = recordingFetch();
    const client = new IntakeClient({ url: intake.url, fetch: rec.fetch, batch: { maxMessages: 100 } });
    const one = await client.send(message(1, 'client-send'));
    const batch = await client.sendBatch([message(2, 'client-batch'), message(3, 'client-batch')]);
    const queued = await Promise.all(
      Array.from({ length: 250 }, (_, i) => client.enqueue(message(i, 'client-q'))),
    );
    await client.close();
    const ids = [one.id, ...batch.ids, ...queued.map((q) => q.id)];
    assert.equal(new Set(ids).size, 253, 'one id per message');
    // 250 enqueued messages went out in batches of at most 100: three requests, not 250.
    assert.equal(rec.seen.filter((r) => r.path === '/v1/messages/batch').length, 4);
    for (const r of rec.seen) assert.match(r.headers.get('idempotency-key') ?? '', /^[\w-]{8,}$/);
    await assertAllStoredOnce(db.url, ids);
  });

  test('a body of 1 KiB or more is gzipped, and intake stores it as sent', async () => {
    const rec = recordingFetch();
    const client = new IntakeClient({ url: intake.url, fetch: rec.fetch });
    const big = { ts: 1530228282, sender: 'client-gzip', message: { text: 'x'.repeat(4000) } };
    const { id } = await client.send(big);
    const sent = rec.seen[0]!;
    assert.equal(sent.headers.get('content-encoding'), 'gzip');
    assert.equal(JSON.parse(gunzipSync(sent.body).toString()).message.text.length, 4000);
    await waitFor(
      'stored',
      async () => (await fetch(`${intake.url}/v1/messages/${id}`)).status === 200,
      30_000,
    );
    const stored = (await (await fetch(`${intake.url}/v1/messages/${id}`)).json()) as {
      message: { text: string };
    };
    assert.equal(stored.message.text, big.message.text);
  });

  test('a message intake refuses for good is thrown at once, never retried, nothing stored', async () => {
    const rec = recordingFetch();
    const client = new IntakeClient({ url: intake.url, fetch: rec.fetch });
    const before = await storedCount(db.url);
    const err = await client.send({ ts: 'yesterday', sender: 'client-bad', message: {} } as Message).then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof IntakeError);
    assert.equal(err.status, 400);
    assert.equal(err.permanent, true);
    assert.equal(err.code, 'INVALID_MESSAGE');
    assert.equal(rec.seen.length, 1, 'a 400 is not retried');
    assert.equal(await storedCount(db.url), before);
  });

  test('nobody listening: retried, then a clear error naming the URL', async () => {
    const port = await freePort();
    const client = new IntakeClient({
      url: `http://127.0.0.1:${port}`,
      retry: { attempts: 3, baseMs: 10, maxMs: 20 },
    });
    const err = await client.send(message(1)).then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof IntakeError);
    assert.equal(err.permanent, false);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });
});

describe('client through faults on the NATS queue', () => {
  let server: NatsServer;
  let db: TestDatabase;
  const procs: IntakeProcess[] = [];
  const dir = tempDir('client-faults');

  before(async () => {
    [server, db] = await Promise.all([startNatsServer(), createTestDatabase('client_faults')]);
  });
  after(async () => {
    for (const p of procs) await p.stop(5000);
    await server?.stop();
    await db?.drop();
    dir.remove();
  });

  test('NATS killed and restarted, then the API SIGKILLed and restarted: every message stored exactly once', async () => {
    const port = await freePort();
    const env = {
      ...natsEnv(server, uniqueStream('client')),
      DATABASE_URL: db.url,
      INTAKE_DATA_DIR: dir.path,
      INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
    };
    let api = await startIntakeApi();
    await startRole('worker', env, procs);
    async function startIntakeApi() {
      const p = await startIntakeProcess('api', env, { port, timeoutMs: 60_000 });
      procs.push(p);
      return p;
    }

    // Retries long enough to ride out each outage below (each is a few seconds).
    // Counts the attempts that did not get an answer intake stands by: the faults must hit traffic.
    let unanswered = 0;
    const counting: typeof fetch = async (input, init) => {
      try {
        const res = await fetch(input, init);
        if (res.status >= 500) unanswered++;
        return res;
      } catch (err) {
        unanswered++;
        throw err;
      }
    };
    const client = new IntakeClient({
      url: `http://127.0.0.1:${port}`,
      fetch: counting,
      retry: { attempts: 60, baseMs: 50, maxMs: 500 },
      timeoutMs: 5000,
    });
    const N = 3000;
    const results: Array<{ id: string }> = [];
    let sent = 0;
    let failed: unknown;
    // 16 callers, each sending one message after another, singly or through enqueue's batches.
    const callers = Array.from({ length: 16 }, async (_, c) => {
      while (sent < N) {
        const n = sent++;
        const m = message(n, 'client-faults');
        try {
          results.push(await (c % 2 ? client.send(m) : client.enqueue(m)));
        } catch (err) {
          failed ??= err;
          return;
        }
      }
    });

    await waitFor('some accepted', () => results.length > 300, 60_000);
    const node = server.nodes[0]!;
    await node.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 2000));
    await node.start();
    await waitFor('accepting again after NATS came back', () => results.length > 1200, 60_000);
    api.kill('SIGKILL');
    await api.exited;
    api = await startIntakeApi();
    await Promise.all(callers);
    await client.close();
    assert.equal(failed, undefined, `a send failed for good: ${failed}`);
    assert.equal(results.length, N);
    assert.ok(unanswered > 0, 'the outages hit requests in flight (else this test proves nothing)');
    console.log(
      `# ${unanswered} attempts got no answer intake stands by and were retried; ${N} messages sent`,
    );
    const ids = results.map((r) => r.id);
    assert.equal(new Set(ids).size, N, 'one id per message, even for those retried after an unknown outcome');
    await assertAllStoredOnce(db.url, ids, 120_000, procs);
    const total = await withDb(
      db.url,
      async (c) => (await c.query('SELECT count(*)::int AS n FROM intake.messages')).rows[0].n,
    );
    assert.equal(total, N, 'exactly the messages sent, none twice');
  });
});
