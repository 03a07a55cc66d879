import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import pg from 'pg';
import { pino } from 'pino';
import { waitFor } from '../../harness/db.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { newMessageId, uuidv7Time } from '../../src/contract/message-id.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * W3C trace context end to end (docs/tracing.md), on both queues: the `traceparent` a client sends is
 * the trace of intake's own span (returned on the answer, a new span id) and the `trace_id` of the
 * stored row; an invalid one starts a new trace, which is stored and returned the same way; batch and
 * NDJSON items get their request's trace; the access line and the dead-letter line name the trace; a
 * queued message from before trace context (no fields, no headers) is still stored, with trace_id null.
 */
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE}-${PARENT}-01`;
const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

interface LogLine {
  msg?: string;
  route?: string;
  status?: number;
  trace_id?: string | null;
  trace_ids?: string[];
  id?: string;
  reqId?: string;
}

/** The parts of the `traceparent` a response carries (it must carry one). */
function answered(res: Response): { traceId: string; spanId: string; flags: string } {
  const tp = res.headers.get('traceparent');
  const m = tp === null ? null : TRACEPARENT_RE.exec(tp);
  assert.ok(m, `a valid traceparent on the ${res.status}: ${tp}`);
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

for (const queue of ['postgres', 'nats'] as const) {
  describe(`trace context through the ${queue} queue`, () => {
    let app: TestApp;
    let db: pg.Client;
    let server: NatsServer | undefined;
    let names: ReturnType<typeof uniqueStream> | undefined;
    const lines: LogLine[] = [];

    before(async () => {
      let env: Record<string, string> = { INTAKE_WORKER_MAX_ATTEMPTS: '2' };
      if (queue === 'nats') {
        server = await startNatsServer();
        names = uniqueStream('trace');
        env = { ...env, ...natsEnv(server, names) };
      }
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
          done();
        },
      });
      app = await startTestApp(`trace_${queue}`, { env, log: pino({ level: 'info' }, sink) });
      db = new pg.Client({ connectionString: app.db.url });
      await db.connect();
      // "Can never be stored", made real: the worker dead-letters this sender's messages.
      await db.query(`
        CREATE SEQUENCE flaky_seen;
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.sender = 'poison' THEN RAISE EXCEPTION 'poison refused' USING ERRCODE = '22023'; END IF;
          -- A transient failure, once (a sequence is not rolled back): the whole batch is retried.
          IF NEW.sender = 'flaky' AND nextval('flaky_seen') = 1 THEN
            RAISE EXCEPTION 'flaky once' USING ERRCODE = '40001';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON intake.messages FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
    });
    after(async () => {
      await db?.end();
      await app?.close();
      await server?.stop();
    });

    /** The stored record as the read API returns it, once the worker stored it. */
    const readBack = (id: string) =>
      waitFor(`message ${id} stored`, async () => {
        const r = await fetch(`${app.url}/v1/messages/${id}`);
        return r.status === 200 ? ((await r.json()) as { id: string; trace_id: string | null }) : undefined;
      });
    const storedTraceId = async (id: string) =>
      (await db.query('SELECT trace_id FROM intake.messages WHERE id = $1', [id])).rows[0]?.trace_id;

    test('a valid traceparent: the 202 names a new span in the same trace, the row stores the trace', async () => {
      const res = await app.post(
        '/v1/messages',
        { ts: 1, sender: 'traced', message: { a: 1 } },
        { traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE, rojo=00f067aa0ba902b7' },
      );
      assert.equal(res.status, 202);
      const tp = answered(res);
      assert.equal(tp.traceId, TRACE);
      assert.notEqual(tp.spanId, PARENT, "intake's own span, not the caller's");
      assert.equal(tp.flags, '01', 'the sampled flag is kept');
      assert.equal(res.headers.get('tracestate'), 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
      const { id } = (await res.json()) as { id: string };
      const got = await readBack(id);
      assert.equal(got.trace_id, TRACE);
      assert.equal(await storedTraceId(id), TRACE);
      const list = (await (await fetch(`${app.url}/v1/messages?sender=traced`)).json()) as {
        items: Array<{ id: string; trace_id: string | null }>;
      };
      assert.equal(list.items.find((m) => m.id === id)?.trace_id, TRACE, 'the list returns it too');
      const status = (await (await fetch(`${app.url}/v1/messages/${id}/status`)).json()) as {
        status: string;
        trace_id?: string;
      };
      assert.deepEqual([status.status, status.trace_id], ['stored', TRACE], 'and the status route');
    });

    test('an invalid traceparent is ignored: a new trace, stored and returned; its tracestate dropped', async () => {
      const upper = `00-${TRACE.toUpperCase()}-${PARENT}-01`;
      for (const bad of [upper, `00-${'0'.repeat(32)}-${PARENT}-01`, `ff-${TRACE}-${PARENT}-01`, 'garbage']) {
        const res = await app.post(
          '/v1/messages',
          { ts: 2, sender: 'untraced', message: { bad } },
          { traceparent: bad, tracestate: 'foo=1' },
        );
        assert.equal(res.status, 202, bad);
        const tp = answered(res);
        assert.notEqual(tp.traceId, TRACE, bad);
        assert.notEqual(tp.traceId, '0'.repeat(32), bad);
        assert.equal(res.headers.get('tracestate'), null, 'tracestate only with a valid traceparent');
        const { id } = (await res.json()) as { id: string };
        assert.equal((await readBack(id)).trace_id, tp.traceId, bad);
      }
    });

    test('no traceparent: a new trace each request, stored and returned', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await app.post('/v1/messages', { ts: 3, sender: 'fresh', message: { i } });
        const tp = answered(res);
        assert.equal(tp.flags, '00');
        const { id } = (await res.json()) as { id: string };
        assert.equal((await readBack(id)).trace_id, tp.traceId);
        ids.push(tp.traceId);
      }
      assert.notEqual(ids[0], ids[1]);
    });

    test("batch (202 and 207) and NDJSON items get their request's trace", async () => {
      const batchTrace = 'a'.repeat(31) + '1';
      const tp = `00-${batchTrace}-${PARENT}-00`;
      const messages = [1, 2, 3].map((i) => ({ ts: i, sender: 'batch', message: { i } }));
      const all = await app.post('/v1/messages/batch', { messages }, { traceparent: tp });
      assert.equal(all.status, 202);
      assert.equal(answered(all).traceId, batchTrace);
      const partial = await app.post(
        '/v1/messages/batch?mode=partial',
        { messages: [...messages, { ts: 'x', sender: 'batch', message: {} }] },
        { traceparent: tp },
      );
      assert.equal(partial.status, 207);
      assert.equal(answered(partial).traceId, batchTrace);
      const ndjson = await app.post('/v1/messages/batch', messages.map((m) => JSON.stringify(m)).join('\n'), {
        'content-type': 'application/x-ndjson',
        traceparent: tp,
      });
      assert.equal(ndjson.status, 207);
      assert.equal(answered(ndjson).traceId, batchTrace);
      const ids = [
        ...((await all.json()) as { items: Array<{ id: string }> }).items,
        ...((await partial.json()) as { items: Array<{ id?: string }> }).items,
        ...((await ndjson.json()) as { items: Array<{ id?: string }> }).items,
      ].flatMap((item) => (item.id ? [item.id] : []));
      assert.equal(ids.length, 9);
      for (const id of ids) assert.equal((await readBack(id)).trace_id, batchTrace, id);
    });

    test('the access line carries the trace id of the answer', async () => {
      const res = await app.post(
        '/v1/messages',
        { ts: 4, sender: 'logged', message: { a: 1 } },
        {
          traceparent: TRACEPARENT,
          'x-request-id': `trace-access-${queue}`,
        },
      );
      assert.equal(res.status, 202);
      const line = await waitFor('the access line', async () =>
        lines.find((l) => l.msg === 'request' && l.reqId === `trace-access-${queue}`),
      );
      assert.equal(line.trace_id, TRACE);
      const refused = await app.post(
        '/v1/messages',
        { ts: 4, sender: 'logged', message: {} },
        {
          'x-request-id': `trace-refused-${queue}`,
        },
      );
      assert.equal(refused.status, 400);
      const tp = answered(refused);
      const refusedLine = await waitFor('the access line of a 400', async () =>
        lines.find((l) => l.msg === 'request' && l.reqId === `trace-refused-${queue}`),
      );
      assert.equal(refusedLine.trace_id, tp.traceId, 'a refusal is traced too');
    });

    test("a message's retry and dead-letter lines, and its dead letter, carry its trace id", async () => {
      const poisonTrace = 'd'.repeat(32);
      const res = await app.post(
        '/v1/messages',
        { ts: 5, sender: 'poison', message: { a: 1 } },
        { traceparent: `00-${poisonTrace}-${PARENT}-01` },
      );
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      const line = await waitFor(
        'the dead-letter line',
        async () => lines.find((l) => l.msg === 'message dead-lettered' && l.id === id),
        20_000,
      );
      assert.equal(line.trace_id, poisonTrace);
      const retry = lines.find((l) => l.msg === 'message failed to store; will retry' && l.id === id);
      assert.equal(retry?.trace_id, poisonTrace, 'the first failure, before the dead letter');
      const dead = await db.query('SELECT payload FROM intake.dead_letters WHERE id = $1', [id]);
      assert.match(dead.rows[0].payload.traceparent, new RegExp(`^00-${poisonTrace}-`));
      const view = (await (await fetch(`${app.url}/v1/dead-letters/${id}`)).json()) as { trace_id?: string };
      assert.equal(view.trace_id, poisonTrace, 'the dead-letter API names the trace');
      const status = (await (await fetch(`${app.url}/v1/messages/${id}/status`)).json()) as {
        status: string;
        trace_id?: string;
      };
      assert.deepEqual([status.status, status.trace_id], ['dead_lettered', poisonTrace]);
    });

    test("a failed batch's line names the batch span's trace and its messages'", async () => {
      const flakyTrace = 'f'.repeat(32);
      const res = await app.post(
        '/v1/messages',
        { ts: 9, sender: 'flaky', message: { a: 1 } },
        { traceparent: `00-${flakyTrace}-${PARENT}-01` },
      );
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      const line = await waitFor('the failed batch line', async () =>
        lines.find((l) => l.msg === 'worker batch failed; retrying' && l.trace_ids?.includes(flakyTrace)),
      );
      assert.match(String(line.trace_id), /^[0-9a-f]{32}$/, "the batch span's own trace");
      assert.notEqual(line.trace_id, flakyTrace, 'a batch span is a new root, linked to its messages');
      // With no other traffic: on NATS the released batch must come back by itself (consumer.ts).
      assert.equal((await readBack(id)).trace_id, flakyTrace, 'stored on the retry');
    });

    test('a queued message without trace fields (an older producer) is stored with trace_id null', async () => {
      const id = newMessageId();
      const old = {
        v: 1,
        id,
        received_at: uuidv7Time(id).toISOString(),
        ts: 6,
        sender: 'old-format',
        message: { old: true },
        priority: null,
      };
      if (queue === 'postgres') {
        await db.query('INSERT INTO intake.queue (id, payload) VALUES ($1, $2)', [id, JSON.stringify(old)]);
      } else {
        const nc = await connect({ servers: server!.url });
        try {
          await jetstream(nc).publish(names!.subject, JSON.stringify({ v: 1, messages: [old] }));
        } finally {
          await nc.close();
        }
      }
      const got = await readBack(id);
      assert.equal(got.trace_id, null);
      assert.equal(await storedTraceId(id), null);
    });

    if (queue === 'postgres') {
      test("a queued message's status names its trace", async () => {
        const id = newMessageId();
        const queued = {
          v: 1,
          id,
          received_at: uuidv7Time(id).toISOString(),
          ts: 10,
          sender: 'waiting',
          message: { a: 1 },
          priority: null,
          traceparent: `00-${'c'.repeat(32)}-${PARENT}-01`,
        };
        // Not visible to the worker for an hour: it stays queued while the status is asked.
        await db.query(
          "INSERT INTO intake.queue (id, payload, visible_at) VALUES ($1, $2, now() + interval '1 hour')",
          [id, JSON.stringify(queued)],
        );
        const status = (await (await fetch(`${app.url}/v1/messages/${id}/status`)).json()) as {
          status: string;
          trace_id?: string;
        };
        assert.deepEqual([status.status, status.trace_id], ['queued', 'c'.repeat(32)]);
        await db.query('DELETE FROM intake.queue WHERE id = $1', [id]);
      });
    }

    if (queue === 'nats') {
      test("a bare message with only the stream's traceparent header takes its trace", async () => {
        const id = newMessageId();
        const bare = {
          v: 1,
          id,
          received_at: uuidv7Time(id).toISOString(),
          ts: 7,
          sender: 'other-producer',
          message: { a: 1 },
          priority: null,
        };
        const h = headers();
        h.set('traceparent', `00-${'e'.repeat(32)}-${PARENT}-01`);
        const nc = await connect({ servers: server!.url });
        try {
          await jetstream(nc).publish(names!.subject, JSON.stringify(bare), { headers: h });
        } finally {
          await nc.close();
        }
        assert.equal((await readBack(id)).trace_id, 'e'.repeat(32));
      });

      test('a stream message of one request carries the W3C headers', async () => {
        const nc = await connect({ servers: server!.url });
        try {
          const res = await app.post(
            '/v1/messages',
            { ts: 8, sender: 'headers', message: { a: 1 } },
            { traceparent: TRACEPARENT, tracestate: 'foo=1' },
          );
          assert.equal(res.status, 202);
          const { id } = (await res.json()) as { id: string };
          await readBack(id);
          const jsm = await jetstream(nc).jetstreamManager();
          const last = await jsm.streams.getMessage(names!.stream, { last_by_subj: names!.subject });
          const body = last!.json<{
            messages: Array<{ id: string; traceparent: string; tracestate: string }>;
          }>();
          const m = body.messages.find((x) => x.id === id);
          assert.ok(m, 'the last stream message holds the message');
          const tp = TRACEPARENT_RE.exec(m.traceparent);
          assert.equal(tp?.[1], TRACE);
          assert.notEqual(tp?.[2], answered(res).spanId, 'the publish span is a child of the request span');
          assert.equal(m.tracestate, 'foo=1');
          assert.equal(last!.header?.get('traceparent'), m.traceparent);
          assert.equal(last!.header?.get('tracestate'), 'foo=1');
        } finally {
          await nc.close();
        }
      });
    }
  });
}
