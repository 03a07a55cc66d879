import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { waitFor } from '../../harness/db.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { newMessageId } from '../../src/contract/message-id.ts';
import { idempotencyBucket } from '../../src/queue/nats/provision.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * Ciphertexts are bound to their message id (docs/privacy.md). On NATS a retry whose Idempotency-Key
 * claim was left pending by a process that died is published again under the id that was promised,
 * not its own: its IP and declared fields must then be encrypted again for that id, or the stored
 * record could never be revealed.
 */
let server: NatsServer;
let app: TestApp;
let nc: NatsConnection;
const names = uniqueStream('rebind');

before(async () => {
  server = await startNatsServer();
  app = await startTestApp('rebind', {
    env: { ...natsEnv(server, names), INTAKE_PUBLISH_TIMEOUT_MS: '300', INTAKE_PII_MESSAGE_FIELDS: 'email' },
  });
  nc = await connect({ servers: server.url });
});
after(async () => {
  await nc?.close();
  await app?.close();
  await server?.stop();
});

test('a taken-over claim is published under the promised id with ciphertexts bound to it', async () => {
  const kv = await new Kvm(jetstream(nc)).open(idempotencyBucket(names.stream));
  const promised = newMessageId();
  // What an API process that died after claiming the key left behind.
  const key = createHash('sha256').update('anonymous\nretry-after-crash').digest('hex');
  await kv.put(key, JSON.stringify({ id: promised, state: 'pending' }));

  const body = { ts: 1, sender: 'rebind', message: { email: 'r@x.org' }, 'sent-from-ip': '192.0.2.9' };
  const res = await waitFor(
    'the pending claim to be taken over',
    async () => {
      const r = await app.post('/v1/messages', body, { 'idempotency-key': 'retry-after-crash' });
      return r.status === 409 ? undefined : r;
    },
    15_000,
    200,
  );
  assert.equal(res.status, 202);
  assert.equal(((await res.json()) as { id: string }).id, promised);
  await waitFor('stored', async () => (await fetch(`${app.url}/v1/messages/${promised}`)).status === 200);
  const shown = (await (await fetch(`${app.url}/v1/messages/${promised}/revealed`)).json()) as {
    'sent-from-ip': string;
    message: { email: string };
    not_revealed?: string[];
  };
  assert.equal(shown.not_revealed, undefined);
  assert.equal(shown['sent-from-ip'], '192.0.2.9');
  assert.equal(shown.message.email, 'r@x.org');
});
