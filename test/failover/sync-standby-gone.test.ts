import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { type PgCluster, pgBinDir, query, startPgCluster } from '../../harness/pg-cluster.ts';
import { CommitNotConfirmedError } from '../../src/store/errors.ts';
import { createPool, withReplicatedTransaction } from '../../src/store/pool.ts';
import { markForReplication } from '../../src/store/sync-marks.ts';
import { startRole, tempDir } from '../helpers/nats-roles.ts';
import {
  ackState,
  createIntakeDatabase,
  post,
  skipWithoutPgBinaries,
  storedTimes,
  waitingForStandby,
} from './cluster-intake.ts';

/**
 * A COMMIT that cannot reach the synchronous standby. A primary and one standby with
 * `synchronous_standby_names = 'ANY 1 (…)'` (as CloudNativePG with `dataDurability: required`); the
 * standby is stopped, so PostgreSQL holds every COMMIT that wrote something until a standby confirms it,
 * and statement_timeout does not cover that wait. Real `intake api` and `intake worker` processes.
 *
 * - Postgres queue: the publish is an INSERT into the queue table, so its COMMIT waits. intake must
 *   answer `503 ACCEPTANCE_UNKNOWN` with the request's own ids at its publish deadline (never 202,
 *   never hang), free the stuck connection (more requests than the producer's pool all answered in
 *   time, no producer backend left waiting), and a retry with the same Idempotency-Key must not get a
 *   202 before the standby is back, then the same id and one row.
 * - NATS queue: the API does not touch PostgreSQL; the worker's COMMIT waits. Nothing may be
 *   acknowledged on the stream before that COMMIT returned; a worker killed meanwhile has its messages
 *   redelivered to another, and no message is stored twice.
 */
const DEADLINE_MS = 1000;
/** Answered by the deadline: cancel grace (250 ms), HTTP and a loaded machine's scheduling. */
const ANSWER_BY_MS = DEADLINE_MS + 1500;
const PRODUCER_POOL = 5; // src/queue/postgres/open.ts
const have = pgBinDir() !== undefined;

let cluster: PgCluster;
let dbUrl: string;
const dir = tempDir('sync-standby');

before(async () => {
  if (!have) return;
  cluster = await startPgCluster({ instances: 2 });
  dbUrl = await createIntakeDatabase(cluster);
});
after(async () => {
  await cluster?.stop();
  dir.remove();
});

const standby = () => cluster.instances[1]!;
/** Stops the standby; every COMMIT on the primary now waits. */
async function standbyGone(): Promise<void> {
  await standby().stop('fast');
}
async function standbyBack(): Promise<void> {
  await standby().start();
  await cluster.waitForSyncStandby();
}
const direct = () => cluster.primary.url('intake');

describe('Postgres queue, the synchronous standby gone', () => {
  const procs: IntakeProcess[] = [];
  let api: IntakeProcess;
  after(async () => {
    for (const p of procs) await p.stop(5000);
  });
  before(async () => {
    if (!have) return;
    const env = {
      DATABASE_URL: dbUrl,
      INTAKE_DATA_DIR: dir.path,
      INTAKE_PUBLISH_TIMEOUT_MS: String(DEADLINE_MS),
      INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
    };
    [api] = await Promise.all([startRole('api', env, procs), startRole('worker', env, procs)]);
  });

  test('every publish answers 503 ACCEPTANCE_UNKNOWN with its own id at the deadline; the pool never drains', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    const ok = await post(api.url, { ts: 1, sender: 'before', message: { a: 1 } });
    assert.equal(ok.status, 202);
    await standbyGone();
    const unknown: string[] = [];
    const answeredMs: number[] = [];
    try {
      // Concurrent requests share one INSERT (group commit); each is told only its own id.
      const group = await Promise.all(
        [1, 2, 3].map((n) => post(api.url, { ts: 1, sender: 'gone', message: { n } })),
      );
      for (const r of group) {
        assert.equal(r.status, 503, JSON.stringify(r.json));
        assert.equal(r.json.code, 'ACCEPTANCE_UNKNOWN');
        assert.equal((r.json.ids as string[]).length, 1, `one request, one id: ${JSON.stringify(r.json)}`);
        assert.ok(r.ms < ANSWER_BY_MS, `answered after ${Math.round(r.ms)} ms`);
        unknown.push(...(r.json.ids as string[]));
        answeredMs.push(r.ms);
      }
      assert.equal(new Set(unknown).size, 3);
      // More requests than the producer's pool holds connections, one after another, each a new
      // group: a stuck COMMIT that kept its connection would leave the later ones none.
      for (let n = 0; n < PRODUCER_POOL + 3; n++) {
        const headers: Record<string, string> = n % 2 ? { 'idempotency-key': `gone-${n}` } : {};
        const r = await post(api.url, { ts: 1, sender: 'gone', message: { n } }, headers);
        assert.equal(r.status, 503, JSON.stringify(r.json));
        assert.equal(r.json.code, 'ACCEPTANCE_UNKNOWN', JSON.stringify(r.json));
        assert.ok(r.ms < ANSWER_BY_MS, `request ${n} answered after ${Math.round(r.ms)} ms`);
        assert.ok(
          r.ms > DEADLINE_MS - 100,
          `request ${n} answered before its deadline (${Math.round(r.ms)} ms)`,
        );
        unknown.push(...(r.json.ids as string[]));
        answeredMs.push(r.ms);
      }
      console.log(
        JSON.stringify({
          standbyGone: 'postgres',
          deadlineMs: DEADLINE_MS,
          answers: answeredMs.length,
          fastestMs: Math.round(Math.min(...answeredMs)),
          slowestMs: Math.round(Math.max(...answeredMs)),
        }),
      );
      // Cancelled, not left waiting: no producer backend holds a server connection in SyncRep.
      await waitFor('no producer backend waiting for the standby', async () => {
        return (await waitingForStandby(direct(), 'intake-queue-producer')) === 0;
      });
      // Dropped connections' backends exit once they see the socket closed: none piles up.
      await waitFor('at most the pool size of producer connections on the server', async () => {
        const conns = await query<{ n: number }>(
          direct(),
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'intake-queue-producer'`,
        );
        return conns[0]!.n <= PRODUCER_POOL;
      });
      // Nothing is stored while commits cannot complete.
      assert.equal((await storedTimes(direct(), unknown)).size, 0);
    } finally {
      await standbyBack();
    }
    // PostgreSQL kept the cancelled commits locally; replicated now, the worker stores each once.
    await waitFor(
      'every ACCEPTANCE_UNKNOWN message stored',
      async () => (await storedTimes(direct(), unknown)).size === unknown.length,
      30_000,
    );
    const times = await storedTimes(direct(), unknown);
    assert.deepEqual(
      [...times.values()].filter((n) => n !== 1),
      [],
      'stored exactly once',
    );
    const after = await post(api.url, { ts: 1, sender: 'after', message: { a: 1 } });
    assert.equal(after.status, 202, 'accepting again without a restart');
  });

  test('a retry with the same Idempotency-Key: no 202 while the standby is away, then the same id and one row', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    const body = { ts: 1, sender: 'retry', message: { a: 1 } };
    const headers = { 'idempotency-key': 'sync-retry-1' };
    await standbyGone();
    let id = '';
    try {
      const first = await post(api.url, body, headers);
      assert.equal(first.status, 503);
      assert.equal(first.json.code, 'ACCEPTANCE_UNKNOWN');
      id = (first.json.ids as string[])[0]!;
      // The first attempt is committed on the primary only: a 202 now could be lost by a failover.
      const again = await post(api.url, body, headers);
      assert.equal(again.status, 503, `a retry during the outage got ${again.status}`);
      if (again.json.code === 'ACCEPTANCE_UNKNOWN') assert.deepEqual(again.json.ids, [id]);
      assert.ok(again.ms < ANSWER_BY_MS, `answered after ${Math.round(again.ms)} ms`);
    } finally {
      await standbyBack();
    }
    const retry = await post(api.url, body, headers);
    assert.equal(retry.status, 202, JSON.stringify(retry.json));
    assert.equal(retry.json.id, id);
    await waitFor('the message stored', async () => (await storedTimes(direct(), [id])).get(id) === 1);
    const rows = await query<{ n: number }>(
      direct(),
      `SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'retry'`,
    );
    assert.equal(rows[0]!.n, 1, 'one stored row');
  });
});

describe('NATS queue, the synchronous standby gone', () => {
  const procs: IntakeProcess[] = [];
  let nats: NatsServer;
  const names = uniqueStream('syncgone');
  let env: Record<string, string>;
  let api: IntakeProcess;
  let worker: IntakeProcess;
  before(async () => {
    if (!have) return;
    nats = await startNatsServer();
    env = {
      ...natsEnv(nats, names),
      DATABASE_URL: dbUrl,
      INTAKE_DATA_DIR: dir.path,
      NATS_ACK_WAIT_MS: '2000',
      INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
    };
    [api, worker] = await Promise.all([startRole('api', env, procs), startRole('worker', env, procs)]);
  });
  after(async () => {
    for (const p of procs) await p.stop(5000);
    await nats?.stop();
  });
  const acks = () => ackState(nats.url, names.stream, names.consumer);
  const workerCommitWaiting = () =>
    waitFor('the worker COMMIT waiting for the standby', async () => {
      return (await waitingForStandby(direct(), 'intake-worker')) > 0;
    });
  const storedOnceAndAcked = async (ids: string[]) => {
    await waitFor('stored and acknowledged', async () => {
      const s = await acks();
      return s.ackFloor === s.last && (await storedTimes(direct(), ids)).size === ids.length;
    });
    const times = await storedTimes(direct(), ids);
    assert.deepEqual([...new Set(times.values())], [1], 'each stored once');
  };
  const accept = async (sender: string, count: number): Promise<string[]> => {
    const ids: string[] = [];
    for (let n = 0; n < count; n++) {
      const r = await post(api.url, { ts: 1, sender, message: { n } });
      assert.equal(r.status, 202, 'the API publishes to NATS, not PostgreSQL');
      ids.push(r.json.id as string);
    }
    return ids;
  };

  test('nothing is acknowledged while the worker COMMIT waits; stored and acked once the standby is back', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    await waitFor('worker idle', async () => (await acks()).ackPending === 0);
    const before = await acks();
    await standbyGone();
    let ids: string[] = [];
    try {
      ids = await accept('nats-gone', 20);
      await workerCommitWaiting();
      // Past ack_wait: the worker keeps its messages (in-progress acks) and acknowledges none.
      await new Promise((r) => setTimeout(r, 3000));
      const held = await acks();
      assert.equal(held.ackFloor, before.ackFloor, 'nothing acknowledged before the COMMIT returned');
      assert.equal(held.redelivered, before.redelivered, 'kept by in-progress acks, not redelivered');
      assert.ok(held.last > before.last);
      assert.equal(held.pending + held.ackPending, held.last - before.last, 'every envelope still unacked');
      assert.equal((await storedTimes(direct(), ids)).size, 0, 'nothing visible before it is replicated');
    } finally {
      await standbyBack();
    }
    await storedOnceAndAcked(ids);
  });

  test('a COMMIT whose wait is cancelled is not acknowledged; its retry waits for the standby too', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    await waitFor('worker idle', async () => (await acks()).ackPending === 0);
    const before = await acks();
    const unconfirmed = () =>
      worker.logs.filter((l) => /maybe not replicated/.test(String((l.err as { message?: string })?.message)))
        .length;
    const reportedBefore = unconfirmed();
    await standbyGone();
    let ids: string[] = [];
    try {
      ids = await accept('nats-cancelled', 5);
      await workerCommitWaiting();
      // As an operator or a failover tool would: PostgreSQL has committed locally already, and tells
      // the client only with a WARNING (syncrep.c).
      await query(
        direct(),
        `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'intake-worker' AND wait_event = 'SyncRep'`,
      );
      await waitFor('the worker reporting the COMMIT as unconfirmed', () => unconfirmed() > reportedBefore);
      // On the primary only: visible there, not on the (stopped) standby, and so not acknowledged.
      assert.equal((await storedTimes(direct(), ids)).size, ids.length, 'committed locally');
      assert.equal(
        (await acks()).ackFloor,
        before.ackFloor,
        'nothing acknowledged after the cancelled COMMIT',
      );
      // Handed back and stored again after a backoff, the batch inserts nothing (its rows are there):
      // its COMMIT must still wait for the standby, not return at once and acknowledge rows a failover
      // could lose. (Here the staging table's truncate at COMMIT writes WAL too; the sync mark makes
      // the wait not depend on that, see the last test of this file.)
      await workerCommitWaiting();
      assert.equal(
        (await acks()).ackFloor,
        before.ackFloor,
        'nothing acknowledged while the standby is away',
      );
    } finally {
      await standbyBack();
    }
    await storedOnceAndAcked(ids);
  });

  test('a worker killed while its COMMIT waits: redelivered to another worker, no message stored twice', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    await waitFor('worker idle', async () => (await acks()).ackPending === 0);
    await standbyGone();
    let ids: string[] = [];
    try {
      ids = await accept('nats-killed', 20);
      await workerCommitWaiting();
      worker.kill('SIGKILL');
      await worker.exited;
      // PostgreSQL does not notice a client gone while it waits for a standby: the dead worker's
      // transaction still holds its rows. The next worker gets the messages after ack_wait and its
      // insert waits on those rows.
      worker = await startRole('worker', env, procs);
      await waitFor('redelivered to the new worker', async () => (await acks()).redelivered > 0, 20_000);
      assert.equal((await storedTimes(direct(), ids)).size, 0);
    } finally {
      await standbyBack();
    }
    await storedOnceAndAcked(ids);
    const all = await query<{ n: number; d: number }>(
      direct(),
      'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM intake.messages',
    );
    assert.equal(all[0]!.n, all[0]!.d, 'no message stored twice');
  });
});

describe("the worker's transaction itself, the synchronous standby gone", () => {
  const app = 'intake-t-sync-mark';
  const settled = (p: Promise<unknown>) => {
    const state = { done: false };
    p.then(
      () => {
        state.done = true;
      },
      () => {
        state.done = true;
      },
    );
    return state;
  };

  test('writing nothing, a COMMIT does not wait; with the sync mark it does, and a cancelled wait rejects as unconfirmed', async (t) => {
    if (skipWithoutPgBinaries(t)) return;
    const pool = createPool({ connectionString: direct(), max: 2, applicationName: app, onError: () => {} });
    await standbyGone();
    try {
      // What a batch that stores nothing would be without the mark: no WAL, so no wait for the standby,
      // and a "confirmed" COMMIT that proves nothing about rows left on the primary.
      const readOnly = withReplicatedTransaction(pool, (tx) =>
        tx.query('SELECT count(*) FROM intake.messages'),
      );
      const s = settled(readOnly);
      await waitFor('a COMMIT without WAL returns with the standby away', () => s.done, 5000);
      await readOnly;
      // With the mark the COMMIT waits like any write; a cancel then leaves it committed locally only.
      const marked = withReplicatedTransaction(pool, (tx) => markForReplication(tx)).then(
        () => undefined,
        (err: unknown) => err,
      );
      await waitFor('the marked COMMIT waiting for the standby', async () => {
        return (await waitingForStandby(direct(), app)) > 0;
      });
      await query(
        direct(),
        `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'SyncRep'`,
        [app],
      );
      assert.ok((await marked) instanceof CommitNotConfirmedError, 'the cancelled wait is reported');
    } finally {
      await standbyBack();
      await pool.end();
    }
  });
});
