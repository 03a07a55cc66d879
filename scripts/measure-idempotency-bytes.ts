// Bytes per Idempotency-Key on the NATS queue, as the bucket's stream counts them (its max_bytes is
// NATS_IDEMPOTENCY_MAX_BYTES): claims made and marked done as an API makes them, with a realistic key
// (client name + a 36-character key), body MAC and, for half of them, an IP pseudonym (which adds the
// subject's index entry, src/queue/nats/idempotency.ts). Then whether a full bucket with discard new
// refuses new keys (as it must) on this server.
//
//   node --import tsx scripts/measure-idempotency-bytes.ts
//
// BENCH_CLAIMS (default 2000). A private nats-server is started (harness/nats.ts), stopped by its PID.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { startNatsServer } from '../harness/nats.ts';
import type { NatsConfig } from '../src/config.ts';
import { IdempotencyClaims } from '../src/queue/nats/idempotency.ts';
import { idempotencyBucket, idempotencyStreamConfig } from '../src/queue/nats/provision.ts';

const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 2000);
const server = await startNatsServer();
const nc = await connect({ servers: server.url });
try {
  const jsm = await jetstreamManager(nc);
  const nats = { stream: 'MEASURE', replicas: 1, idempotencyTtlHours: 24, idempotencyMaxBytes: 0 };
  const config = idempotencyStreamConfig(nats as unknown as NatsConfig);
  await jsm.streams.add(config);
  const kv = await new Kvm(jetstream(nc)).open(idempotencyBucket(nats.stream));
  const claims = new IdempotencyClaims(
    () => kv,
    () => jsm,
    config.name,
    10_000,
  );
  const key = randomBytes(32);
  const mac = (s: string) => createHmac('sha256', key).update(s).digest('base64url');
  const pseudonym = () => createHmac('sha256', key).update(randomUUID()).digest('base64');

  async function fill(n: number, withSubject: boolean) {
    const before = (await jsm.streams.info(config.name)).state;
    for (let i = 0; i < n; i++) {
      const c = await claims.claim(
        `svc-orders\n${randomUUID()}`,
        randomUUID(),
        mac(`{"ts":${i},"sender":"orders","message":{}}`),
        withSubject ? pseudonym() : undefined,
      );
      await claims.done(c);
    }
    const after = (await jsm.streams.info(config.name)).state;
    return { bytes: after.bytes - before.bytes, msgs: after.messages - before.messages };
  }
  const plain = await fill(CLAIMS, false);
  const withIp = await fill(CLAIMS, true);
  console.log(
    `without an IP: ${(plain.bytes / CLAIMS).toFixed(1)} bytes per key (${plain.msgs / CLAIMS} stream message each)`,
  );
  console.log(
    `with an IP: ${(withIp.bytes / CLAIMS).toFixed(1)} bytes per key (${withIp.msgs / CLAIMS} stream messages each: claim + subject index)`,
  );

  // A full bucket with discard new must refuse a new key and keep the oldest. nats-server before the
  // 2.10 line's fix (#4771) miscounts a message's size, accepts it, then evicts the oldest instead.
  const state = (await jsm.streams.info(config.name)).state;
  await jsm.streams.update(config.name, { ...config, max_bytes: state.bytes + 200 });
  let refused = 0;
  for (let i = 0; i < 5; i++) {
    await claims.claim(`svc-orders\n${randomUUID()}`, randomUUID(), mac('y')).catch(() => refused++);
  }
  const after = (await jsm.streams.info(config.name)).state;
  const evicted = after.first_seq - state.first_seq;
  const { version } = nc.info ?? {};
  console.log(
    `nats-server ${version}, bucket full under discard new: ${refused} of 5 new keys refused, ` +
      `${evicted} of the oldest keys ${evicted ? 'EVICTED (nats-server #4771, fixed upstream in #4772, before the 2.10.29 of the images)' : 'evicted'}`,
  );
} finally {
  await nc.close();
  await server.stop();
}
