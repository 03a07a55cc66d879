import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { NewPodFilter } from '../../src/pod-watcher/new-pod-filter.ts';
import { summarisePod } from '../../src/pod-watcher/pod-log.ts';

const termStart = Date.parse('2026-01-01T12:00:00.700Z');

/** A pod as a watch event carries it (creationTimestamp is a string; list results carry a Date). */
function pod(name: string, created: string | Date, uid: string = randomUUID()): V1Pod {
  return {
    metadata: { name, namespace: 'default', uid, creationTimestamp: created as Date },
  };
}

describe('new pod filter', () => {
  it('does not report pods from the baseline list, and reports each later pod once', () => {
    const f = new NewPodFilter(termStart);
    const old = pod('old', new Date('2025-12-31T00:00:00Z'));
    f.baseline([old]);
    assert.equal(f.isNew(old), false);
    const fresh = pod('fresh', '2026-01-01T12:00:05Z');
    assert.equal(f.isNew(fresh), true);
    assert.equal(f.isNew(fresh), false, 'the same UID again (update, relist) is not new');
  });

  it('reports nothing before the baseline exists', () => {
    const f = new NewPodFilter(termStart);
    assert.equal(f.isNew(pod('early', '2026-01-01T12:00:05Z')), false);
  });

  it('ignores later lists: a relist is not a baseline', () => {
    const f = new NewPodFilter(termStart);
    f.baseline([]);
    const during = pod('during-gap', '2026-01-01T12:00:09Z');
    f.baseline([during]);
    assert.equal(f.isNew(during), true);
  });

  it('does not report pods created before the term began, at one-second resolution', () => {
    const f = new NewPodFilter(termStart);
    f.baseline([]);
    assert.equal(f.isNew(pod('before', '2026-01-01T11:59:59Z')), false);
    // Created in the same second the term began: creationTimestamp cannot say which came first.
    assert.equal(f.isNew(pod('same-second', '2026-01-01T12:00:00Z')), true);
    assert.equal(f.isNew(pod('no-timestamp', 'not a time')), false);
  });

  it('reports a pod recreated under the same name (new UID), and forgets deleted UIDs', () => {
    const f = new NewPodFilter(termStart);
    f.baseline([]);
    const first = pod('web-0', '2026-01-01T12:00:01Z');
    assert.equal(f.isNew(first), true);
    f.forget(first);
    assert.equal(f.size, 0);
    assert.equal(f.isNew(pod('web-0', '2026-01-01T12:00:02Z')), true);
  });

  it('remembers at most maxSeen UIDs, evicting the oldest', () => {
    const f = new NewPodFilter(termStart, 2);
    f.baseline([]);
    const [a, b, c] = ['a', 'b', 'c'].map((n) => pod(n, '2026-01-01T12:00:01Z'));
    for (const p of [a!, b!, c!]) assert.equal(f.isNew(p), true);
    assert.equal(f.size, 2);
    assert.equal(f.isNew(c!), false);
    assert.equal(f.isNew(a!), true, 'the evicted UID is reported again: the documented cost of the cap');
  });
});

describe('pod log line', () => {
  it('summarises what an operator needs, preferring the controlling owner', () => {
    const s = summarisePod({
      metadata: {
        name: 'web-7d4b9-x2x',
        namespace: 'shop',
        uid: 'u-1',
        creationTimestamp: '2026-01-01T12:00:01Z' as unknown as Date,
        labels: { app: 'web' },
        ownerReferences: [
          { apiVersion: 'v1', kind: 'Thing', name: 'other', uid: 'o-1' },
          { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d4b9', uid: 'o-2', controller: true },
        ],
      },
      spec: {
        nodeName: 'node-3',
        containers: [
          { name: 'web', image: 'web:1.2' },
          { name: 'proxy', image: 'envoy:1.30' },
        ],
        initContainers: [{ name: 'migrate', image: 'web:1.2' }],
      },
      status: { phase: 'Pending' },
    });
    assert.deepEqual(s, {
      namespace: 'shop',
      pod: 'web-7d4b9-x2x',
      uid: 'u-1',
      node: 'node-3',
      phase: 'Pending',
      images: ['web:1.2', 'envoy:1.30'],
      initImages: ['web:1.2'],
      owner: { kind: 'ReplicaSet', name: 'web-7d4b9' },
      labels: { app: 'web' },
      created: '2026-01-01T12:00:01.000Z',
    });
  });

  it('has null node and owner for an unscheduled bare pod', () => {
    const s = summarisePod({ metadata: { name: 'p', namespace: 'n', uid: 'u' }, spec: { containers: [] } });
    assert.equal(s.node, null);
    assert.equal(s.owner, null);
    assert.equal(s.phase, null);
    assert.equal(s.created, null);
    assert.equal('initImages' in s, false);
  });
});
