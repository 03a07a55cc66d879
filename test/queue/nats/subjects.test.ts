import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { quietLog, waitFor } from '../../../harness/db.ts';
import { queuedMessage } from '../../../harness/messages.ts';
import { type NatsServer, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { loadConfig } from '../../../src/config.ts';
import type { QueuedMessage } from '../../../src/contract/queued-message.ts';
import { openNatsQueue } from '../../../src/queue/nats/mod.ts';
import { natsQueueSettings } from '../../../src/queue/open-queue.ts';
import type { OpenedQueue, QueueProducer } from '../../../src/queue/queue.ts';
import { withJsm } from '../../helpers/nats-roles.ts';

/**
 * GDPR counts on the NATS queue (issue 8, item 5): how many messages of one data subject (IP pseudonym)
 * are still on the stream and not yet acknowledged by the writer consumer. Real envelopes from the real
 * publisher; the writer's own consumer acknowledges part of them; the counts must be exact.
 */
let server: NatsServer;
let producer: QueueProducer;
let queue: OpenedQueue;
const names = uniqueStream('subjects');
const config = () =>
  loadConfig({
    NATS_URL: server.url,
    NATS_STREAM: names.stream,
    NATS_SUBJECT: names.subject,
    NATS_CONSUMER: names.consumer,
  });

before(async () => {
  server = await startNatsServer();
  queue = await openNatsQueue(natsQueueSettings(config()), { log: quietLog });
  producer = queue.producer;
});
after(async () => {
  await queue?.close();
  await server?.stop();
});

const ackFloor = () =>
  withJsm(
    server.url,
    async (jsm) => (await jsm.consumers.info(names.stream, names.consumer)).ack_floor.stream_seq,
  );

const withSubject = (n: number, pseudonym: string | undefined): QueuedMessage => {
  const m = queuedMessage(n, { sender: 'subjects', withIp: pseudonym !== undefined });
  if (pseudonym !== undefined) m.ip!.pseudonym = pseudonym;
  return m;
};
const A = 'AAAAsubjectA+/pseudonym0000000000000000000=';
const B = 'BBBBsubjectB+/pseudonym0000000000000000000=';

test('with no worker running, the count per subject is exact', async () => {
  const plan = [A, B, undefined, B, A, B, undefined, B, B, A];
  // One call per message: one envelope each. Then one call of many: envelopes of several messages.
  for (const [i, p] of plan.entries()) await producer.publish([{ message: withSubject(i, p) }]);
  await producer.publish(plan.map((p, i) => ({ message: withSubject(100 + i, p) })));
  assert.equal(await producer.queuedForSubject(A), 6);
  assert.equal(await producer.queuedForSubject(B), 10);
  assert.equal(await producer.queuedForSubject('not-a-subject'), 0);
  // A pseudonym only ever appears as a whole field value, not as part of another.
  assert.equal(await producer.queuedForSubject(A.slice(0, 10)), 0);
});

test('messages the writer consumer acknowledged no longer count; those it holds still do', async () => {
  const batch = await queue.consumer!.receive({
    max: 4,
    maxWaitMs: 200,
    signal: new AbortController().signal,
  });
  assert.ok(batch);
  const got = (p: string) => batch.deliveries.filter((d) => d.message.ip?.pseudonym === p).length;
  // Delivered, not yet acknowledged: still queued (the worker may not have stored them).
  assert.equal(await producer.queuedForSubject(A), 6);
  await batch.acknowledge(batch.deliveries.map(() => ({ kind: 'stored' as const })));
  // Acks are not confirmed by the server: wait until its ack floor shows them.
  await waitFor('the acks to reach the server', async () => (await ackFloor()) >= batch.deliveries.length);
  assert.equal(await producer.queuedForSubject(A), 6 - got(A));
  assert.equal(await producer.queuedForSubject(B), 10 - got(B));
});

test('beyond the scan bound the count is a lower bound, and a warning says so', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const q = await openNatsQueue(
    { ...natsQueueSettings(config()), subjectScan: { maxMessages: 2, maxMs: 5000 } },
    { log },
  );
  try {
    // The first 4 envelopes are acknowledged; the next two hold one message each, of A and of B.
    assert.equal(await q.producer.queuedForSubject(B), 1);
    assert.ok(
      lines.some((l) => l.msg === 'queued count for a subject is a lower bound: the scan stopped early'),
      JSON.stringify(lines),
    );
  } finally {
    await q.close();
  }
});
