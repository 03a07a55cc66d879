import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { generateKey } from '../../src/auth/api-keys.ts';
import { IntakeClient, IntakeError, NotStoredError } from '../../src/client/index.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * client.status() and client.waitUntilStored() against a real intake (Postgres queue, worker running):
 * resolves once stored; rejects with NotStoredError on dead-lettered, erased and timeout; a refusal
 * that cannot change (bad id, no read scope) is thrown at once.
 */
describe('client: status and waitUntilStored', () => {
  const all = generateKey('all', ['ingest', 'read', 'privacy']);
  const ingestOnly = generateKey('ingest-only', ['ingest']);
  let app: TestApp;
  let db: pg.Client;
  let client: IntakeClient;
  before(async () => {
    app = await startTestApp('client_status', {
      env: {
        INTAKE_API_KEYS: JSON.stringify([all.entry, ingestOnly.entry]),
        INTAKE_WORKER_MAX_ATTEMPTS: '1',
      },
    });
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
    await db.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.sender = 'client-poison' THEN RAISE EXCEPTION 'poison refused' USING ERRCODE = '22023'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
    client = new IntakeClient({ url: app.url, apiKey: all.key });
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  test('a sent message: waitUntilStored resolves with the stored status, status() agrees', async () => {
    const { id } = await client.send({ ts: 1, sender: 'client-status', message: { a: 1 } });
    const s = await client.waitUntilStored(id, 15_000);
    assert.equal(s.status, 'stored');
    assert.equal(s.id, id);
    assert.ok(s.stored_at && Date.parse(s.stored_at) > 0);
    assert.deepEqual(await client.status(id), s);
  });

  test("a traceparent given to send joins the caller's trace: answered, stored, shown by status", async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parent = `00-${traceId}-b7ad6b7169203331-01`;
    const sent = await client.send(
      { ts: 1, sender: 'client-trace', message: { a: 1 } },
      { traceparent: parent, tracestate: 'vendor=x' },
    );
    const [version, answeredTrace, span, flags] = sent.traceparent!.split('-');
    assert.equal(version, '00');
    assert.equal(answeredTrace, traceId);
    assert.notEqual(span, 'b7ad6b7169203331', 'intake answers with a span of its own');
    assert.equal(flags, '01');
    const stored = await client.waitUntilStored(sent.id, 15_000);
    assert.equal(stored.trace_id, traceId);
    const batch = await client.sendBatch(
      [
        { ts: 1, sender: 'client-trace', message: { b: 1 } },
        { ts: 1, sender: 'client-trace', message: { b: 2 } },
      ],
      { traceparent: parent },
    );
    assert.equal(batch.traceparent!.split('-')[1], traceId);
    for (const id of batch.ids) assert.equal((await client.waitUntilStored(id, 15_000)).trace_id, traceId);
    // Without one, intake starts a trace of its own and says which.
    const own = await client.send({ ts: 1, sender: 'client-trace', message: { c: 1 } });
    const ownTrace = own.traceparent!.split('-')[1];
    assert.notEqual(ownTrace, traceId);
    assert.equal((await client.waitUntilStored(own.id, 15_000)).trace_id, ownTrace);
  });

  test('dead-lettered and erased: NotStoredError with the outcome and the last status', async () => {
    const { id: poison } = await client.send({ ts: 1, sender: 'client-poison', message: { a: 1 } });
    const dead = await client.waitUntilStored(poison, 15_000).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    assert.ok(dead instanceof NotStoredError);
    assert.equal(dead.outcome, 'dead_lettered');
    assert.match(dead.last!.reason!, /poison refused/);

    const { id } = await client.send({
      ts: 1,
      sender: 'client-status',
      message: { b: 1 },
      'sent-from-ip': '192.0.2.77',
    });
    await client.waitUntilStored(id, 15_000);
    const res = await fetch(`${app.url}/v1/subjects/ip/192.0.2.77`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${all.key}` },
    });
    assert.equal(res.status, 200);
    await assert.rejects(
      client.waitUntilStored(id, 15_000),
      (e: unknown) => e instanceof NotStoredError && e.outcome === 'erased' && e.last?.status === 'erased',
    );
  });

  test('an id never accepted: unknown, and waitUntilStored times out saying so', async () => {
    const never = '0190a6e4-0000-7000-8000-000000000000';
    assert.deepEqual(await client.status(never), { id: never, status: 'unknown' });
    const started = Date.now();
    await assert.rejects(
      client.waitUntilStored(never, 400),
      (e: unknown) => e instanceof NotStoredError && e.outcome === 'timeout' && e.last?.status === 'unknown',
    );
    assert.ok(Date.now() - started >= 400);
  });

  test('a malformed id or a key without read scope: a permanent IntakeError at once', async () => {
    await assert.rejects(
      client.waitUntilStored('not-an-id', 10_000),
      (e: unknown) => e instanceof IntakeError && e.permanent && e.status === 400,
    );
    const writer = new IntakeClient({ url: app.url, apiKey: ingestOnly.key });
    await assert.rejects(
      writer.status('0190a6e4-0000-7000-8000-000000000000'),
      (e: unknown) => e instanceof IntakeError && e.permanent && e.code === 'FORBIDDEN',
    );
  });
});
