// Leader election between real pod watcher processes, against the fake API server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startCluster, TEST_TIMINGS, waitFor } from './replicas.ts';

describe('leader election between replica processes', () => {
  it('elects exactly one of three replicas', async (t) => {
    const c = await startCluster(t, 3);
    const leader = await c.leader();

    // Check over several renewals, not just once: the leader keeps the Lease and nobody else claims it.
    const lease = () => c.fake.lease('default', 'pod-watcher');
    for (let round = 0; round < 3; round++) {
      const rv = Number(lease()?.metadata.resourceVersion);
      await waitFor('the leader to renew', () => Number(lease()?.metadata.resourceVersion) > rv);
      const gauges = await Promise.all(c.replicas.map((r) => r.metric('pod_watcher_is_leader')));
      assert.deepEqual(
        gauges,
        c.replicas.map((r) => (r === leader ? 1 : 0)),
        `exactly one is_leader gauge is 1\n${c.dump()}`,
      );
      assert.equal(c.holder(), leader.name);
    }
    assert.equal(lease()?.spec?.leaseTransitions, 0, 'created by the first leader, no takeover yet');
    assert.equal(lease()?.spec?.leaseDurationSeconds, TEST_TIMINGS.leaseDurationMs / 1000);
    for (const r of c.replicas) {
      assert.equal(await r.metric('pod_watcher_leader_transitions_total'), r === leader ? 1 : 0);
      assert.equal(r.hasLogged('started leading'), r === leader);
      assert.equal(await r.httpStatus('/readyz'), 200, 'standbys are ready too');
      assert.equal(await r.httpStatus('/healthz'), 200);
    }
  });

  it('hands over at once when the leader gets SIGTERM (the Lease is released, not waited out)', async (t) => {
    // A long lease makes the difference unmistakable: waiting it out would take 10 s.
    const c = await startCluster(t, 3, { env: { LEASE_DURATION_MS: '10000' } });
    const old = await c.leader();
    const transitions = Number(c.fake.lease('default', 'pod-watcher')?.spec?.leaseTransitions);

    const started = performance.now();
    old.signal('SIGTERM');
    const next = await c.leader(10_000, old);
    const tookMs = performance.now() - started;
    t.diagnostic(`handover after SIGTERM took ${Math.round(tookMs)} ms`);

    await old.exited;
    assert.equal(old.exitCode, 0, `a SIGTERMed replica exits 0\n${old.tail()}`);
    assert.ok(old.hasLogged('released the lease'), old.tail());
    assert.ok(tookMs < 2500, `took ${Math.round(tookMs)} ms to hand over\n${c.dump()}`);
    const spec = c.fake.lease('default', 'pod-watcher')?.spec;
    assert.equal(spec?.holderIdentity, next.name);
    assert.equal(spec?.leaseTransitions, transitions + 1, 'the takeover is counted in the Lease');
    assert.equal(await next.metric('pod_watcher_leader_transitions_total'), 1);
    const standby = c.alive().find((r) => r !== next)!;
    assert.equal(await standby.metric('pod_watcher_is_leader'), 0);
  });

  it('takes over from a frozen leader after the lease duration; the old leader steps down on waking', async (t) => {
    const c = await startCluster(t, 3);
    const old = await c.leader();
    await waitFor('the leader to watch pods', () => c.fake.openWatches(old.name) > 0);
    c.fake.createPod({ namespace: 'default', name: 'before-freeze' });
    await waitFor('the leader to log before-freeze', () =>
      old.loggedPods().includes('default/before-freeze'),
    );

    const frozenAt = performance.now();
    old.signal('SIGSTOP');
    const next = await c.leader(20_000, old);
    t.diagnostic(`takeover from the frozen leader took ${Math.round(performance.now() - frozenAt)} ms`);
    // The new leader waited the lease out: it took over no sooner than a lease duration after the frozen
    // leader's last renewal (both stamps are this machine's clock, taken before the writes).
    const writes = c.fake.leaseHistory.map((l) => l.spec ?? {});
    const takeover = writes.findIndex((s) => s.holderIdentity === next.name);
    const lastRenew = writes.slice(0, takeover).findLast((s) => s.holderIdentity === old.name);
    const waitedMs =
      Date.parse(String(writes[takeover]?.acquireTime)) - Date.parse(String(lastRenew?.renewTime));
    assert.ok(
      waitedMs >= TEST_TIMINGS.leaseDurationMs,
      `took over ${waitedMs} ms after the last renewal, before the lease expired\n${c.dump()}`,
    );

    // A pod created now reaches the new leader, and also sits unread in the frozen leader's watch socket.
    await waitFor('the new leader to watch pods', () => c.fake.openWatches(next.name) > 0);
    c.fake.createPod({ namespace: 'default', name: 'after-takeover' });
    await waitFor('the new leader to log after-takeover', () =>
      next.loggedPods().includes('default/after-takeover'),
    );

    old.signal('SIGCONT');
    await waitFor('the old leader to exit', () => !old.running, 15_000);
    assert.notEqual(
      old.exitCode,
      0,
      `the old leader exits non-zero so Kubernetes restarts it\n${old.tail()}`,
    );
    assert.ok(
      old.logs.some((l) => l.msg === 'stopped leading' && l.outcome === 'lost'),
      `the old leader noticed it lost\n${old.tail()}`,
    );
    assert.deepEqual(
      old.loggedPods(),
      ['default/before-freeze'],
      'the old leader logged nothing after waking',
    );
    assert.deepEqual(c.loggedPods().sort(), ['default/after-takeover', 'default/before-freeze']);
    assert.equal(c.holder(), next.name);
    assert.equal(await next.metric('pod_watcher_is_leader'), 1);
  });

  it('a leader cut off from the API server stops at the renew deadline, before a standby takes over', async (t) => {
    const c = await startCluster(t, 2);
    const old = await c.leader();
    t.after(() => c.fake.unfreeze(old.name));
    c.fake.freeze(old.name);

    const next = await c.leader(20_000, old);
    await waitFor('the cut-off leader to exit', () => !old.running, 20_000);
    assert.equal(old.exitCode, 1, old.tail());
    const stoppedAt = Date.parse(String(old.logs.find((l) => l.msg === 'stopped leading')?.time));
    const startedAt = Date.parse(String(next.logs.find((l) => l.msg === 'started leading')?.time));
    assert.ok(
      stoppedAt < startedAt,
      `the old leader stopped (${new Date(stoppedAt).toISOString()}) before the new one started ` +
        `(${new Date(startedAt).toISOString()}): never two leaders\n${c.dump()}`,
    );
  });
});
