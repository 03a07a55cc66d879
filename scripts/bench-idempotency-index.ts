// What the subject index of the NATS Idempotency-Key bucket costs and buys (src/queue/nats/idempotency.ts):
// (a) claims without a subject vs (b) claims with one, each followed by `done`, as an API makes them:
// the index entry is one more KV write per keyed request with an IP, sent alongside the claim; then the
// erasure of one subject with the index (a filtered key listing) vs without it (reading every value of
// the bucket, the alternative design).
//
//   node --import tsx scripts/bench-idempotency-index.ts
//
// BENCH_CLAIMS (default 5000 per run), BENCH_CONCURRENCY (100 in flight), BENCH_ROUNDS (3, alternating
// a/b). A private nats-server is started (harness/nats.ts) and stopped by its PID at the end.
import { randomBytes, randomUUID } from 'node:crypto';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { startNatsServer } from '../harness/nats.ts';
import { IdempotencyClaims } from '../src/queue/nats/idempotency.ts';

const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const server = await startNatsServer();
const nc = await connect({ servers: server.url });
try {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kv = await new Kvm(js).create('bench-idem', { history: 1, ttl: 3_600_000 });
  const claims = new IdempotencyClaims(
    () => kv,
    () => jsm,
    'KV_bench-idem',
    10_000,
  );
  const pseudonym = () => randomBytes(32).toString('base64');
  const erased = pseudonym();

  /** CLAIMS claims (and their `done`), CONCURRENCY at a time; per second and p50/p99 ms of a claim. */
  async function run(withSubject: boolean, label: string) {
    const lat: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < CLAIMS) {
          const i = next++;
          const sub = withSubject ? (i % 100 === 0 ? erased : pseudonym()) : undefined;
          const t = performance.now();
          const c = await claims.claim(`${label}\n${i}`, randomUUID(), 'mac', sub);
          await claims.done(c);
          lat.push(performance.now() - t);
        }
      }),
    );
    const s = (performance.now() - started) / 1000;
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.floor(p * (lat.length - 1))]!.toFixed(2);
    return { perSecond: Math.round(CLAIMS / s), p50: q(0.5), p99: q(0.99) };
  }

  for (let r = 0; r < ROUNDS; r++) {
    const a = await run(false, `a${r}`);
    const b = await run(true, `b${r}`);
    console.log(
      `round ${r + 1}: without subject ${a.perSecond}/s (p50 ${a.p50} ms, p99 ${a.p99} ms); ` +
        `with subject ${b.perSecond}/s (p50 ${b.p50} ms, p99 ${b.p99} ms)`,
    );
  }

  const info = await jsm.streams.info('KV_bench-idem');
  // Without an index: read every value of the bucket and pick the subject's (an ordered consumer).
  let t = performance.now();
  const oc = await js.consumers.get('KV_bench-idem', { deliver_policy: DeliverPolicy.All });
  let seen = 0;
  let found = 0;
  const needle = Buffer.from(JSON.stringify(erased));
  for await (const m of await oc.consume()) {
    seen++;
    if (Buffer.from(m.data).includes(needle)) found++;
    if (m.seq >= info.state.last_seq) break;
  }
  const scanMs = performance.now() - t;
  t = performance.now();
  const forgotten = await claims.forgetSubject(erased);
  const indexMs = performance.now() - t;
  console.log(
    `bucket of ${info.state.messages} messages: scanning every value ${scanMs.toFixed(0)} ms (${seen} read, ` +
      `${found} of the subject); erasure through the index ${indexMs.toFixed(0)} ms (${forgotten} claims removed)`,
  );
} finally {
  await nc.close();
  await server.stop();
}
