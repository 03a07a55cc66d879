import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, type TestDatabase, waitFor } from '../../../harness/db.ts';
import type { IntakeProcess } from '../../../harness/intake-process.ts';
import { type NatsServer, natsEnv, startNatsCluster, uniqueStream } from '../../../harness/nats.ts';
import { startLoad } from '../../helpers/load.ts';
import { assertAllStoredOnce, startRole, tempDir } from '../../helpers/nats-roles.ts';

/**
 * A 3-node JetStream cluster on loopback with the stream at replicas 3, as in production. The node that
 * leads the stream is killed under load: publishes may be refused (503) while a new leader is elected,
 * but every `202` was acknowledged by a quorum and is stored exactly once.
 */
let cluster: NatsServer;
let db: TestDatabase;
const procs: IntakeProcess[] = [];
const dir = tempDir('nats-cluster');
const names = uniqueStream('cluster');

before(async () => {
  [cluster, db] = await Promise.all([startNatsCluster(), createTestDatabase('nats_cluster')]);
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await cluster?.stop();
  await db?.drop();
  dir.remove();
});

async function streamLeader(): Promise<{ leader: string; replicas: number }> {
  const nc = await connect({ servers: cluster.url.split(','), maxReconnectAttempts: 0 });
  try {
    const si = await (await jetstreamManager(nc, { timeout: 2000 })).streams.info(names.stream);
    return { leader: si.cluster?.leader ?? '', replicas: si.config.num_replicas };
  } finally {
    await nc.close();
  }
}

test('killing the stream leader of a 3-node cluster under load loses no accepted message', async () => {
  const env = {
    ...natsEnv(cluster, names),
    NATS_REPLICAS: '3',
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir.path,
    INTAKE_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  const [api] = await Promise.all([startRole('api', env, procs), startRole('worker', env, procs)]);
  // Stream info can time out on a busy machine; the leader only matters once it is known.
  const { leader, replicas } = await waitFor('the stream leader', async () => {
    const s = await streamLeader();
    return s.leader ? s : undefined;
  });
  assert.equal(replicas, 3);
  const victim = cluster.nodes.find((n) => leader.endsWith(`_${n.name}`));
  assert.ok(victim, `leader ${leader} is one of the nodes`);

  const load = startLoad(api.url, { concurrency: 8, maxRequests: 30_000, sender: 'cluster' });
  try {
    await waitFor('load flowing', () => load.result.accepted.length > 500, 30_000);
    await victim.kill('SIGKILL');
    const atKill = load.result.accepted.length;
    await waitFor(
      'a new leader elected',
      async () => {
        const s = await streamLeader();
        return s.leader !== '' && s.leader !== leader;
      },
      30_000,
      250,
    );
    await waitFor('accepting on two nodes', () => load.result.accepted.length > atKill + 1000, 60_000);
  } finally {
    await load.stop();
  }
  const other = [...load.result.statuses.keys()].filter((s) => s !== 202 && s !== 503);
  assert.deepEqual(other, [], JSON.stringify([...load.result.statuses]));
  assert.equal(load.result.networkErrors, 0);
  await assertAllStoredOnce(db.url, load.result.accepted, 90_000, procs);
});
