import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../../harness/nats.ts';
import { runDoctor } from '../../../src/commands/doctor-checks.ts';
import { loadConfig } from '../../../src/config.ts';
import {
  assertAllStoredOnce,
  consumerBacklog,
  message,
  post,
  scrape,
  startRole,
  tempDir,
  total,
  withDb,
  withJsm,
} from '../../helpers/nats-roles.ts';

/**
 * A stream with a size limit and a lagging worker (issue 8, item 1). With `discard: old` the server
 * deleted the oldest UNCONSUMED messages to make room: 202 answered, message gone. A full stream must
 * refuse new publishes instead (503 QUEUE_FULL + Retry-After), lose nothing it acknowledged, say so on
 * /readyz, metrics and `intake doctor`, and take traffic again once the worker caught up (acknowledged
 * messages are trimmed, since limits retention would otherwise keep them until max_age).
 */
let server: NatsServer;
let db: TestDatabase;
let api: IntakeProcess;
const procs: IntakeProcess[] = [];
const names = uniqueStream('limits');
const dir = tempDir('nats-limits');
/** Stream messages (envelopes of 1 to a few queued messages here). */
const LIMIT = 40;
let env: Record<string, string>;

before(async () => {
  [server, db] = await Promise.all([startNatsServer(), createTestDatabase('nats_limits')]);
  env = {
    ...natsEnv(server, names),
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    NATS_MAX_MSGS: String(LIMIT),
    NATS_ACK_WAIT_MS: '3000',
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  // The stream as an operator sized it before this fix: a message limit, and the old discard policy.
  await withJsm(server.url, (jsm) =>
    jsm.streams.add({
      name: names.stream,
      subjects: [names.subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_msgs: LIMIT,
    }),
  );
  api = await startRole('api', env, procs);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await server?.stop();
  await db?.drop();
  dir.remove();
});

const SENDER = 'limits';
interface Answer {
  n: number;
  status: number;
  code: unknown;
  retryAfter: string | null;
  id?: string;
}
const answers: Answer[] = [];
/** What the API process showed while the stream was full and no worker ran (checked in test 2). */
let whileFull: {
  ready: number;
  metrics: Map<string, number> | Error;
  doctor: Awaited<ReturnType<typeof runDoctor>>;
};

/** Posts `count` messages from 4 clients; every answer is recorded with its message number. */
async function postMany(from: number, count: number): Promise<Answer[]> {
  const out: Answer[] = [];
  let next = from;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < from + count) {
        const n = next++;
        const r = await post(api.url, message(n, SENDER));
        out.push({
          n,
          status: r.status,
          code: r.json.code,
          retryAfter: r.retryAfter,
          ...(r.status === 202 ? { id: r.json.id as string } : {}),
        });
      }
    }),
  );
  return out;
}

async function storedNumbers(): Promise<number[]> {
  return withDb(db.url, async (c) => {
    const r = await c.query<{ n: number }>(
      "SELECT (message->>'n')::int AS n FROM intake.messages WHERE sender = $1 ORDER BY 1",
      [SENDER],
    );
    return r.rows.map((x) => x.n);
  });
}

test('published past the limit with no worker: every 202 stored exactly once, nothing answered 503 stored', async () => {
  answers.push(...(await postMany(0, 300)));
  // Observed before any worker runs (asserted in the next test, after the loss accounting).
  const ready = await waitFor('/readyz to turn 503', async () => {
    const s = (await fetch(`${api.url}/readyz`)).status;
    return s === 503 ? s : undefined;
  }).catch(() => 200);
  const metrics = await waitFor(
    'the API to export the stream usage',
    async () => {
      const m = await scrape(api.url);
      return total(m, 'intake_queue_stream_messages') === LIMIT ? m : undefined;
    },
    15_000,
    200,
  ).catch((err: Error) => err);
  const doctor = await runDoctor(loadConfig(env), db.url);
  whileFull = { ready, metrics, doctor };

  const worker = await startRole('worker', env, procs);
  const accepted = answers.filter((a) => a.status === 202).map((a) => a.id!);
  await assertAllStoredOnce(db.url, accepted, 60_000, [api, worker]);
  await waitFor('the queue drained', async () => {
    const b = await consumerBacklog(server.url, names.stream, names.consumer);
    return b.pending === 0 && b.ackPending === 0;
  });
  const acceptedNumbers = answers
    .filter((a) => a.status === 202)
    .map((a) => a.n)
    .sort((a, b) => a - b);
  assert.deepEqual(await storedNumbers(), acceptedNumbers, 'stored = exactly the messages answered 202');

  const refused = answers.filter((a) => a.status !== 202);
  assert.ok(refused.length > 0, 'the stream filled up: some publishes were refused');
  for (const r of refused) {
    assert.equal(r.status, 503);
    assert.equal(r.code, 'QUEUE_FULL', `message ${r.n} answered ${r.code}`);
    assert.ok(Number(r.retryAfter) > 0, 'Retry-After is set');
  }
  assert.ok(accepted.length >= LIMIT, `${accepted.length} accepted: at least one per stream message`);
});

test('while full: /readyz says so, the API exports usage and depth, doctor fails the stream', async () => {
  assert.equal(whileFull.ready, 503, '/readyz turned 503 while the stream was full');
  assert.ok(!(whileFull.metrics instanceof Error), String(whileFull.metrics));
  const m = whileFull.metrics;
  assert.equal(total(m, 'intake_queue_stream_limit_messages'), LIMIT);
  assert.ok(total(m, 'intake_queue_stream_bytes') > 0);
  assert.equal(total(m, 'intake_queue_stream_limit_bytes'), 0, 'no byte limit configured');
  assert.equal(total(m, 'intake_queue_depth'), LIMIT, 'depth exported by the API with no worker running');
  const usage = whileFull.doctor.find((c) => c.name === 'stream usage');
  assert.ok(usage, JSON.stringify(whileFull.doctor));
  assert.equal(usage.status, 'fail', usage.detail);
  assert.match(usage.detail, /full/);
  const stream = whileFull.doctor.find((c) => c.name === 'stream');
  assert.equal(stream?.status, 'ok', `the stream was fixed at start: ${stream?.detail}`);
});

test('the drifted stream was fixed at start: discard new, the configured limit', async () => {
  const si = await withJsm(server.url, (jsm) => jsm.streams.info(names.stream));
  assert.equal(si.config.discard, DiscardPolicy.New);
  assert.equal(si.config.max_msgs, LIMIT);
  const drift = api.logs.filter((l) => l.msg === 'NATS setting differs from the configuration; fixing it');
  assert.ok(
    drift.some((l) => l.field === 'discard' && l.expected === 'new' && l.actual === 'old'),
    JSON.stringify(drift),
  );
});

test('once the worker caught up, acknowledged messages are trimmed and publishing works again', async () => {
  await waitFor(
    '/readyz 200 again',
    async () => (await fetch(`${api.url}/readyz`)).status === 200,
    20_000,
    200,
  );
  const again = await postMany(1000, 20);
  assert.deepEqual(
    again.filter((a) => a.status !== 202),
    [],
  );
  const accepted = again.map((a) => a.id!);
  await assertAllStoredOnce(db.url, accepted);
  const si = await withJsm(server.url, (jsm) => jsm.streams.info(names.stream));
  assert.ok(si.state.messages < LIMIT, `${si.state.messages} stream messages left after trimming`);
  const workerMetrics = await scrape(procs[1]!.url);
  assert.ok(total(workerMetrics, 'intake_queue_stream_trimmed_messages_total') > 0, 'trimming is counted');
  const logs = procs[1]!.logs.filter((l) => l.msg === 'trimmed acknowledged messages from the stream');
  assert.ok(logs.length > 0, 'trimming is logged');
  assert.equal(total(workerMetrics, 'intake_maintenance_failures_total'), 0);
});
