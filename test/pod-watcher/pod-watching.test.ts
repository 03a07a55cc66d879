// What the leader logs, against the fake API server: new pods exactly once, through 410 relists and
// dropped watches, and the metrics that count it all. Real replica processes; their stdout is parsed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FakeApiServer } from './fake-apiserver.ts';
import { type Cluster, type Replica, startCluster, waitFor } from './replicas.ts';

/** Creates a pod and waits until `leader` has logged it. */
async function createAndSee(c: Cluster, leader: Replica, namespace: string, name: string): Promise<void> {
  c.fake.createPod({ namespace, name });
  await waitFor(`${namespace}/${name} to be logged`, () =>
    leader.loggedPods().includes(`${namespace}/${name}`),
  );
}

/** Waits until the leader has an open watch again (after a restart or a relist). */
async function watching(fake: FakeApiServer, leader: Replica): Promise<void> {
  await waitFor(`${leader.name} to watch pods`, () => fake.openWatches(leader.name) > 0);
}

describe('pod watching by the leader', () => {
  it('logs each new pod exactly once, through relists and dropped watches, and counts it', async (t) => {
    const c = await startCluster(t, 2, {
      setup(fake) {
        fake.createPod({ namespace: 'default', name: 'pre-existing-1' });
        fake.createPod({ namespace: 'kube-system', name: 'pre-existing-2' });
      },
    });
    const leader = await c.leader();
    const standby = c.replicas.find((r) => r !== leader)!;
    await watching(c.fake, leader);

    // New pods, with everything the log line carries.
    c.fake.createPod({
      namespace: 'shop',
      name: 'web-1',
      labels: { app: 'web', tier: 'front' },
      nodeName: 'node-a',
      images: ['web:1.2', 'envoy:1.30'],
      owner: { kind: 'ReplicaSet', name: 'web-7d4b9' },
    });
    await createAndSee(c, leader, 'jobs', 'batch-1');
    const line = leader.logs.find((l) => l.event === 'pod_created' && l.pod === 'web-1');
    assert.ok(line, leader.tail());
    assert.equal(line.msg, 'new pod');
    assert.equal(line.service, 'pod-watcher');
    assert.equal(line.namespace, 'shop');
    assert.equal(line.node, 'node-a');
    assert.equal(line.phase, 'Pending');
    assert.match(String(line.uid), /^[0-9a-f-]{36}$/);
    assert.deepEqual(line.images, ['web:1.2', 'envoy:1.30']);
    assert.deepEqual(line.owner, { kind: 'ReplicaSet', name: 'web-7d4b9' });
    assert.deepEqual(line.labels, { app: 'web', tier: 'front' });
    assert.match(String(line.created), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);

    // An update, and a pod whose creationTimestamp predates leadership, are not new. The events arrive in
    // order on one watch, so once the marker pod is logged the two before it have been judged.
    c.fake.updatePod('shop', 'web-1', (p) => {
      p.status.phase = 'Running';
    });
    c.fake.createPod({ namespace: 'jobs', name: 'backdated', createdAt: new Date(Date.now() - 3_600_000) });
    await createAndSee(c, leader, 'jobs', 'marker-1');

    // 410 Gone as an ERROR event on the open watch (history compacted): relist, log only what is new.
    c.fake.expireHistory();
    c.fake.createPod({ namespace: 'shop', name: 'during-relist-1' });
    await waitFor('a relist', async () => (await leader.metric('pod_watcher_relists_total')) >= 1);
    await waitFor('during-relist-1', () => leader.loggedPods().includes('shop/during-relist-1'));
    await watching(c.fake, leader);
    await createAndSee(c, leader, 'shop', 'after-relist-1');

    // 410 Gone as an HTTP status when the client comes back with a resourceVersion that has expired.
    c.fake.goneAs = 'http';
    c.fake.expireHistory({ notifyWatches: false });
    const gone = c.fake.counts.gone;
    c.fake.closeWatches();
    // Comes either in the relist or on the new watch, depending on timing; logged once either way.
    c.fake.createPod({ namespace: 'shop', name: 'during-relist-2' });
    await waitFor('a 410 on re-watch', () => c.fake.counts.gone > gone);
    await waitFor('a second relist', async () => (await leader.metric('pod_watcher_relists_total')) >= 2);
    await waitFor('during-relist-2', () => leader.loggedPods().includes('shop/during-relist-2'));
    await watching(c.fake, leader);

    // A watch connection reset mid-stream: client-node's informer stops on it; the watcher restarts it.
    const restarts = await leader.metric('pod_watcher_watch_restarts_total');
    const errors = await leader.metric('pod_watcher_watch_errors_total');
    assert.ok(c.fake.dropWatches() >= 1);
    await waitFor(
      'the watch to restart',
      async () => (await leader.metric('pod_watcher_watch_restarts_total')) > restarts,
    );
    assert.ok(
      (await leader.metric('pod_watcher_watch_errors_total')) > errors,
      'the reset counted as an error',
    );
    await watching(c.fake, leader);
    await createAndSee(c, leader, 'jobs', 'after-drop');

    // A clean server-side close (watch timeout) just reconnects.
    const restarts2 = await leader.metric('pod_watcher_watch_restarts_total');
    c.fake.closeWatches();
    await waitFor(
      'the watch to reconnect',
      async () => (await leader.metric('pod_watcher_watch_restarts_total')) > restarts2,
    );
    await watching(c.fake, leader);
    await createAndSee(c, leader, 'jobs', 'after-close');

    // Exactly once each, only by the leader, nothing pre-existing, backdated or merely updated.
    const expected = [
      'jobs/after-close',
      'jobs/after-drop',
      'jobs/batch-1',
      'jobs/marker-1',
      'shop/after-relist-1',
      'shop/during-relist-1',
      'shop/during-relist-2',
      'shop/web-1',
    ];
    assert.deepEqual(c.loggedPods().sort(), expected, c.dump());
    assert.deepEqual(standby.loggedPods(), []);

    // The metrics agree.
    const m = await leader.metrics();
    const value = (name: string, labels: Record<string, string> = {}) =>
      m.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ??
      0;
    assert.equal(value('pod_watcher_pods_created_total', { namespace: 'jobs' }), 4);
    assert.equal(value('pod_watcher_pods_created_total', { namespace: 'shop' }), 4);
    assert.equal(value('pod_watcher_pods_created_total', { namespace: 'default' }), 0);
    assert.equal(value('pod_watcher_is_leader'), 1);
    assert.equal(value('pod_watcher_leader_transitions_total'), 1);
    assert.ok(value('pod_watcher_watch_restarts_total') >= 4, 'two 410s, a reset and a close');
    assert.equal(value('pod_watcher_relists_total'), 2);
    assert.ok(value('pod_watcher_watch_events_total', { type: 'update' }) >= 1);
    assert.ok(value('process_resident_memory_bytes') > 0, 'default process metrics are exported');
    assert.equal(await standby.metric('pod_watcher_pods_created_total', { namespace: 'jobs' }), 0);
  });

  it('does not log again what the previous leader logged, after a handover', async (t) => {
    const c = await startCluster(t, 2);
    const first = await c.leader();
    await watching(c.fake, first);
    await createAndSee(c, first, 'default', 'under-first');
    first.signal('SIGTERM');
    const second = await c.leader(10_000, first);
    await watching(c.fake, second);
    await createAndSee(c, second, 'default', 'under-second');
    assert.deepEqual(c.loggedPods().sort(), ['default/under-first', 'default/under-second']);
  });

  it('watches only WATCH_NAMESPACE when it is set', async (t) => {
    const c = await startCluster(t, 1, { env: { WATCH_NAMESPACE: 'apps' } });
    const leader = await c.leader();
    await watching(c.fake, leader);
    c.fake.createPod({ namespace: 'other', name: 'ignored' });
    await createAndSee(c, leader, 'apps', 'seen');
    assert.deepEqual(leader.loggedPods(), ['apps/seen']);
  });
});
