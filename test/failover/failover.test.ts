import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import type { IntakeProcess } from '../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsServer, uniqueStream } from '../../harness/nats.ts';
import { type FailoverReport, type PgCluster, query, startPgCluster } from '../../harness/pg-cluster.ts';
import { startRole, tempDir } from '../helpers/nats-roles.ts';
import {
  ackState,
  createIntakeDatabase,
  idsInStream,
  skipWithoutPgBinaries,
  storedTimes,
} from './cluster-intake.ts';
import { disruption, startTimedLoad } from './timed-load.ts';

/**
 * A PostgreSQL failover under load, on each queue. Three instances as in production (CloudNativePG,
 * synchronous ANY 1), intake's DATABASE_URL pointing at the `-rw` proxy, real `intake api` and
 * `intake worker` processes, steady load from 8 clients. Replication stalls for a second, then the
 * primary crashes (immediate stop), the most advanced standby is promoted, the proxy follows it, the
 * third instance streams from it. Times in the report count from the crash.
 *
 * Holds: every `202` is on the new primary exactly once; on NATS, nothing acknowledged off the stream
 * is missing from the new primary; intake recovers without a restart (503s meanwhile are allowed).
 * Prints one JSON line per queue: lost, duplicated, 503 counts and the recovery time.
 */
const LOAD = { concurrency: 8, maxRequests: 60_000 };
/** Load before the crash, and 202s wanted after the switch before the load stops. */
const WARM_ACCEPTED = 1000;
const AFTER_ACCEPTED = 2000;
/**
 * The standbys' WAL receivers are stopped this long before the crash, so the primary dies with commits
 * that no standby has: only synchronous replication keeps those from having been answered 202 (with
 * `synchronous_standby_names = ''` this test loses messages).
 */
const STALL_MS = 1000;

interface Setup {
  cluster: PgCluster;
  nats?: NatsServer;
  procs: IntakeProcess[];
  dir: ReturnType<typeof tempDir>;
}

async function teardown(s: Partial<Setup>): Promise<void> {
  for (const p of s.procs ?? []) await p.stop(5000);
  await s.nats?.stop();
  await s.cluster?.stop();
  s.dir?.remove();
}

async function failoverUnderLoad(t: TestContext, queue: 'postgres' | 'nats'): Promise<void> {
  if (skipWithoutPgBinaries(t)) return;
  const s: Partial<Setup> = { procs: [], dir: tempDir(`failover-${queue}`) };
  try {
    const names = uniqueStream('failover');
    const [cluster, nats] = await Promise.all([
      startPgCluster({ instances: 3 }),
      queue === 'nats' ? startNatsServer() : undefined,
    ]);
    s.cluster = cluster;
    s.nats = nats;
    const dbUrl = await createIntakeDatabase(cluster);
    const env: Record<string, string> = {
      DATABASE_URL: dbUrl,
      INTAKE_DATA_DIR: s.dir!.path,
      INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
      // A batch leased (Postgres queue) or held (NATS) by a worker whose COMMIT died with the primary
      // comes back after this, not after the 30 s default, so each run stays short.
      INTAKE_QUEUE_LEASE_MS: '5000',
      NATS_ACK_WAIT_MS: '5000',
      ...(nats ? natsEnv(nats, names) : {}),
    };
    const [api, worker] = await Promise.all([
      startRole('api', env, s.procs!),
      startRole('worker', env, s.procs!),
    ]);
    const pids = [api.child.pid, worker.child.pid];

    const load = startTimedLoad(api.url, { ...LOAD, sender: `failover-${queue}` });
    let report: FailoverReport;
    let ackedMissing: string[] = [];
    let ackedChecked = 0;
    let storedAgainAfterMs: number | undefined;
    try {
      await waitFor(
        'load flowing and stored',
        async () => {
          if (load.accepted() < WARM_ACCEPTED) return false;
          const n = await query<{ n: number }>(
            cluster.url('intake'),
            'SELECT count(*)::int AS n FROM intake.messages',
          );
          return n[0]!.n > WARM_ACCEPTED / 2;
        },
        30_000,
      );
      report = await cluster.failover({ stallReplicationMs: STALL_MS });
      if (nats) {
        // Everything the writer has acknowledged (up to its ack floor) must be on the new primary.
        const acks = await ackState(nats.url, names.stream, names.consumer);
        const acked = await idsInStream(nats.url, names.stream, 1, acks.ackFloor);
        const found = await storedTimes(cluster.primary.url('intake'), acked);
        ackedMissing = acked.filter((id) => !found.has(id));
        ackedChecked = acked.length;
      }
      storedAgainAfterMs = await firstStoredAfter(cluster.primary.url('intake'), report.crashedAt);
      const atSwitch = load.accepted();
      await waitFor(
        'accepting again after the failover',
        () => load.accepted() >= atSwitch + AFTER_ACCEPTED,
        45_000,
      );
    } finally {
      await load.stop();
    }
    const answers = load.answers;
    const accepted = answers.filter((a) => a.status === 202).flatMap((a) => a.ids);
    const unknownIds = answers.filter((a) => a.code === 'ACCEPTANCE_UNKNOWN').flatMap((a) => a.ids);
    const newPrimary = cluster.primary.url('intake');
    // The worker drains what is queued; a lease or ack wait (5 s) may hold the last of it.
    await waitFor(
      'every accepted message stored',
      async () => {
        return (await storedTimes(newPrimary, accepted)).size === accepted.length;
      },
      40_000,
    ).catch(() => {});
    const times = await storedTimes(newPrimary, accepted);
    const lost = accepted.filter((id) => !times.has(id));
    const all = await query<{ n: number; d: number }>(
      newPrimary,
      'SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM intake.messages',
    );
    // Rows beyond one per id, over the whole table (a 202 stored twice, or anything else).
    const duplicated = all[0]!.n - all[0]!.d;
    const unknownStored = (await storedTimes(newPrimary, unknownIds)).size;
    const d = disruption(answers, report!.crashedAt);
    console.log(
      JSON.stringify({
        failover: queue,
        ...d,
        lost: lost.length,
        duplicated,
        unknownStored,
        ackedChecked,
        ackedMissing: ackedMissing.length,
        storedAgainAfterMs,
        switchedAfterMs: report!.switchedAfterMs,
        syncStandbyAfterMs: report!.syncAfterMs,
        promoted: report!.promoted,
      }),
    );
    assert.equal(lost.length, 0, `${lost.length} accepted messages are not on the new primary`);
    assert.equal(duplicated, 0, 'a message was stored twice');
    assert.equal(
      ackedMissing.length,
      0,
      'messages acknowledged on the stream are missing from the new primary',
    );
    const other = Object.keys(d.statuses).filter((code) => code !== '202' && code !== '503');
    assert.deepEqual(other, [], `only 202 and 503: ${JSON.stringify(d.statuses)}`);
    assert.deepEqual([api.child.pid, worker.child.pid], pids);
    assert.equal(api.child.exitCode, null, 'the API still runs');
    assert.equal(worker.child.exitCode, null, 'the worker still runs');
    assert.equal((await fetch(`${api.url}/readyz`)).status, 200, 'the API is ready again');
  } finally {
    await teardown(s);
  }
}

/** Waits for the worker to store a new row on the new primary; ms from `since` (performance.now()). */
async function firstStoredAfter(url: string, since: number): Promise<number> {
  const count = async () =>
    (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM intake.messages'))[0]!.n;
  const before = await count();
  await waitFor('the worker storing on the new primary', async () => (await count()) > before, 45_000, 50);
  return Math.round(performance.now() - since);
}

test('Postgres queue: a PostgreSQL failover under load loses and duplicates nothing, intake recovers by itself', (t) =>
  failoverUnderLoad(t, 'postgres'));

test('NATS queue: a PostgreSQL failover under load loses and duplicates nothing, intake recovers by itself', (t) =>
  failoverUnderLoad(t, 'nats'));
