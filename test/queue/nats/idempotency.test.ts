import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { quietLog, waitFor } from '../../../harness/db.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { type NatsServer, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import { decodeEnvelope } from '../../../src/queue/nats/envelope.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import { idempotencyBucket } from '../../../src/queue/nats/provision.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';
import {
  IdempotencyKeyInFlightError,
  IdempotencyKeyReusedError,
  type OpenedQueue,
  type PublishRequest,
  QueueFullError,
  type QueueProducer,
} from '../../../src/queue/queue.ts';

/**
 * Idempotency-Key on the NATS queue (issue 8, item 7, NATS half), against a real nats-server. The KV
 * value holds the id, a fingerprint of the body and a state (docs/queue-format.md): the same key with
 * another body is refused (422), a key whose first request is still being published answers 409, a
 * claim left pending by a crashed process is taken over after the publish timeout plus a margin, and
 * values written by older versions (a plain id) still count as done.
 */
let server: NatsServer;
let nc: NatsConnection;
let kv: KV;
const opened: OpenedQueue[] = [];
const names = uniqueStream('idem');
/** publish timeout 500 ms: a claim counts as in flight for 500 ms + the margin (docs). */
const TIMEOUT_MS = 500;
let producer: QueueProducer;

function open(env: Record<string, string> = {}, n = names) {
  return openNatsQueue(
    natsQueueSettings(
      loadConfig({
        NATS_URL: server.url,
        NATS_STREAM: n.stream,
        NATS_SUBJECT: n.subject,
        NATS_CONSUMER: n.consumer,
        INTAKE_PUBLISH_TIMEOUT_MS: String(TIMEOUT_MS),
        ...env,
      }),
    ),
    { log: quietLog, roles: ['api'] },
  );
}

before(async () => {
  server = await startNatsServer();
  const q = await open();
  producer = q.producer;
  opened.push(q);
  nc = await connect({ servers: server.url });
  kv = await new Kvm(jetstream(nc)).open(idempotencyBucket(names.stream));
});
after(async () => {
  for (const q of opened) await q.close();
  await nc?.close();
  await server?.stop();
});

const SCOPE = 'client-a';
const req = (key: string, fingerprint: string | undefined, n = 1): PublishRequest => ({
  message: queuedMessage(n, { sender: 'idem' }),
  idempotencyKey: `${SCOPE}\n${key}`,
  ...(fingerprint === undefined ? {} : { fingerprint }),
});
/** The KV key of a scoped Idempotency-Key, as docs/queue-format.md defines it. */
const kvKey = (key: string) => createHash('sha256').update(`${SCOPE}\n${key}`).digest('hex');

/** Every queued-message id on the stream, in stream order (read with a consumer of the test's own). */
async function idsOnStream(stream = names.stream): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(stream)).state.last_seq;
  const ids: string[] = [];
  if (last === 0) return ids;
  const c = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const msgs = await c.fetch({ max_messages: 10_000, expires: 2000 });
  for await (const m of msgs) {
    ids.push(...decodeEnvelope(m.data).messages.map((x) => x.id));
    if (m.seq >= last) break;
  }
  return ids;
}

test('the same key and body: the first id, and the message is on the stream once', async () => {
  const a = req('k1', 'f1');
  const [first] = await producer.publish([a]);
  const [again] = await producer.publish([req('k1', 'f1', 2)]);
  assert.deepEqual(first, { id: a.message.id, duplicate: false });
  assert.deepEqual(again, { id: a.message.id, duplicate: true });
  const ids = await idsOnStream();
  assert.equal(ids.filter((id) => id === a.message.id).length, 1, 'acknowledged once: no republish');
});

test('the same key with another body: IdempotencyKeyReusedError naming the first id; nothing published', async () => {
  const a = req('k2', 'f2');
  await producer.publish([a]);
  const other = req('k2', 'f2-other', 2);
  const err = await producer.publish([other]).catch((e: unknown) => e);
  assert.ok(err instanceof IdempotencyKeyReusedError, `got ${String(err)}`);
  assert.equal(err.originalId, a.message.id);
  assert.ok(!(await idsOnStream()).includes(other.message.id));
});

test('the same key twice at once: one id, or "in flight" for the later one; never two ids', async () => {
  const racing = await Promise.all(
    [1, 2, 3].map((n) => producer.publish([req('k3', 'f3', n)]).catch((e: unknown) => e)),
  );
  const ids = racing.flatMap((r) => (Array.isArray(r) ? r.map((x: { id: string }) => x.id) : []));
  assert.ok(ids.length >= 1);
  assert.equal(new Set(ids).size, 1, JSON.stringify(racing));
  for (const r of racing.filter((x) => !Array.isArray(x))) {
    assert.ok(r instanceof IdempotencyKeyInFlightError, `got ${String(r)}`);
  }
  const [later] = await producer.publish([req('k3', 'f3', 4)]);
  assert.deepEqual(later, { id: ids[0], duplicate: true });
});

test('while the first request with the key is in flight: IdempotencyKeyInFlightError', async () => {
  const claimed = queuedMessage(9, { sender: 'idem' }).id;
  // What an API process writes when it claims the key, before its publish is acknowledged.
  await kv.put(kvKey('k4'), JSON.stringify({ id: claimed, mac: 'f4', state: 'pending' }));
  const err = await producer.publish([req('k4', 'f4')]).catch((e: unknown) => e);
  assert.ok(err instanceof IdempotencyKeyInFlightError, `got ${String(err)}`);
  // Another body is a reuse even while in flight.
  const reused = await producer.publish([req('k4', 'other')]).catch((e: unknown) => e);
  assert.ok(reused instanceof IdempotencyKeyReusedError, `got ${String(reused)}`);
});

test('a claim left pending by a crashed process is taken over after the window, under the original id', async () => {
  const claimed = queuedMessage(10, { sender: 'idem' }).id;
  await kv.put(kvKey('k5'), JSON.stringify({ id: claimed, mac: 'f5', state: 'pending' }));
  const claimedAt = Date.now();
  const first = await producer.publish([req('k5', 'f5')]).catch((e: unknown) => e);
  assert.ok(first instanceof IdempotencyKeyInFlightError, `got ${String(first)}`);
  const result = await waitFor(
    'the claim to be taken over',
    async () => {
      try {
        return await producer.publish([req('k5', 'f5')]);
      } catch (err) {
        if (err instanceof IdempotencyKeyInFlightError) return undefined;
        throw err;
      }
    },
    15_000,
    100,
  );
  const waited = Date.now() - claimedAt;
  assert.deepEqual(result, [{ id: claimed, duplicate: true }]);
  assert.ok(waited >= TIMEOUT_MS, `taken over after ${waited} ms, not before the publish timeout`);
  assert.ok((await idsOnStream()).includes(claimed), 'republished under the id that was promised');
  const value = JSON.parse((await kv.get(kvKey('k5')))!.string()) as { state: string; id: string };
  assert.deepEqual([value.id, value.state], [claimed, 'done']);
});

test('a value in the old format (a plain id) reads as done, fingerprint unknown, and is republished', async () => {
  const legacy = queuedMessage(11, { sender: 'idem' }).id;
  await kv.put(kvKey('k6'), legacy);
  const [result] = await producer.publish([req('k6', 'any-body')]);
  assert.deepEqual(result, { id: legacy, duplicate: true });
  // Old versions wrote the value before publishing: the publish may never have happened.
  assert.ok((await idsOnStream()).includes(legacy));
});

test('a value with an unkeyed fingerprint (before the keyed one) is honoured without a body check', async () => {
  const earlier = queuedMessage(12, { sender: 'idem' }).id;
  await kv.put(kvKey('k8'), JSON.stringify({ id: earlier, fp: 'sha256-of-the-body', state: 'done' }));
  const [result] = await producer.publish([req('k8', 'a-keyed-mac')]);
  assert.deepEqual(result, { id: earlier, duplicate: true });
});

test('a publish the stream refuses gives the key back: a later retry is not told "in flight"', async () => {
  const full = uniqueStream('idemfull');
  const q = await open({ NATS_MAX_MSGS: '1' }, full);
  opened.push(q);
  await q.producer.publish([{ message: queuedMessage(1, { sender: 'idem' }) }]);
  const refused = await q.producer.publish([req('k7', 'f7')]).catch((e: unknown) => e);
  assert.ok(refused instanceof QueueFullError, `got ${String(refused)}`);
  const fullKv = await new Kvm(jetstream(nc)).open(idempotencyBucket(full.stream));
  const entry = await fullKv.get(kvKey('k7'));
  assert.ok(entry === null || entry.operation !== 'PUT', 'the claim was released');
  const again = await q.producer.publish([req('k7', 'f7')]).catch((e: unknown) => e);
  assert.ok(again instanceof QueueFullError, `the retry got ${String(again)}`);
});
