// The leader election timing rules, step by step, on an in-memory Lease and a manual clock. The same rules
// against the fake API server and real processes are in leader-election.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Lease } from '@kubernetes/client-node';
import { createLogger } from '../../src/ops/logger.ts';
import {
  isLeaseExpired,
  isRenewalFresh,
  jitteredRetry,
  LeaderElector,
  leaseDurationSeconds,
} from '../../src/pod-watcher/leader-election.ts';
import {
  type LeaderElectionRecord,
  LeaseConflictError,
  type LeaseLock,
  type LeaseSnapshot,
} from '../../src/pod-watcher/lease-lock.ts';

const logger = createLogger({ level: 'silent' });

/** A Lease in memory with the API server's optimistic concurrency, and hooks to interleave writers. */
class MemoryLeaseLock implements LeaseLock {
  readonly description = 'test/lease';
  stored: LeaseSnapshot | null = null;
  private rv = 0;
  failing = false;
  /** Runs after a read and before the write that follows it, to simulate a competing writer. */
  beforeWrite?: () => void;

  seed(record: LeaderElectionRecord): void {
    this.stored = this.snapshot(record);
  }

  /** Runs during a read, e.g. to let the clock advance while the request is in flight. */
  duringGet?: () => void;

  async get(): Promise<LeaseSnapshot | null> {
    this.duringGet?.();
    if (this.failing) throw new Error('connection refused');
    return this.stored ? structuredClone(this.stored) : null;
  }

  async create(record: LeaderElectionRecord): Promise<LeaseSnapshot> {
    this.runHook();
    if (this.stored) throw new LeaseConflictError('already exists');
    this.stored = this.snapshot(record);
    return structuredClone(this.stored);
  }

  async update(previous: LeaseSnapshot, record: LeaderElectionRecord): Promise<LeaseSnapshot> {
    this.runHook();
    if (this.failing) throw new Error('connection refused');
    if (!this.stored || this.stored.resourceVersion !== previous.resourceVersion)
      throw new LeaseConflictError('conflict');
    this.stored = this.snapshot(record);
    return structuredClone(this.stored);
  }

  private runHook(): void {
    const hook = this.beforeWrite;
    this.beforeWrite = undefined;
    hook?.();
  }

  private snapshot(record: LeaderElectionRecord): LeaseSnapshot {
    const resourceVersion = String(++this.rv);
    return { record: { ...record }, resourceVersion, lease: { metadata: { resourceVersion } } as V1Lease };
  }
}

/** An elector on `lock` whose monotonic clock is `clock.now`. */
function elector(identity: string, lock: LeaseLock, clock: { now: number }, timings = { lease: 15_000 }) {
  return new LeaderElector({
    identity,
    lock,
    logger,
    leaseDurationMs: timings.lease,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    now: () => clock.now,
    onStartedLeading: () => {},
    onStoppedLeading: () => {},
  });
}

const never = new AbortController().signal;

describe('lease timing rules', () => {
  it('writes whole seconds, rounded up, to the Lease', () => {
    assert.equal(leaseDurationSeconds(15_000), 15);
    assert.equal(leaseDurationSeconds(1_500), 2);
    assert.equal(leaseDurationSeconds(1), 1);
  });

  it('expires a lease leaseDuration after it was last seen to change, on the local clock', () => {
    assert.equal(isLeaseExpired(1_000, 15, 15_999), false);
    assert.equal(isLeaseExpired(1_000, 15, 16_000), true);
  });

  it('jitters retries between 1× and 2.2× the retry period, as client-go does', () => {
    assert.equal(jitteredRetry(2_000, 0), 2_000);
    assert.equal(jitteredRetry(2_000, 1), 4_400);
  });

  it('lets the leader act only while its last renewal is younger than the renew deadline', () => {
    assert.equal(isRenewalFresh(5_000, 10_000, 14_999), true);
    assert.equal(isRenewalFresh(5_000, 10_000, 15_000), false);
  });

  it('creates the Lease when it does not exist, with no transitions yet', async () => {
    const lock = new MemoryLeaseLock();
    assert.equal(await elector('a', lock, { now: 0 }).tryAcquireOrRenew(never, 1000), true);
    assert.equal(lock.stored?.record.holderIdentity, 'a');
    assert.equal(lock.stored?.record.leaseDurationSeconds, 15);
    assert.equal(lock.stored?.record.leaseTransitions, 0);
  });

  it('loses a create race to whoever created first (409 AlreadyExists)', async () => {
    const lock = new MemoryLeaseLock();
    lock.beforeWrite = () => lock.seed(record('a', '2024-01-01T00:00:00.000000Z'));
    assert.equal(await elector('b', lock, { now: 0 }).tryAcquireOrRenew(never, 1000), false);
    assert.equal(lock.stored?.record.holderIdentity, 'a');
  });

  it('waits a full lease duration from its own first observation, however old renewTime looks', async () => {
    const lock = new MemoryLeaseLock();
    // renewTime from years ago, e.g. another node's clock is far behind: must not count as expired.
    lock.seed(record('a', '2001-01-01T00:00:00.000000Z'));
    const clock = { now: 100_000 };
    const b = elector('b', lock, clock);
    assert.equal(await b.tryAcquireOrRenew(never, 1000), false);
    clock.now += 14_999;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), false);
    clock.now += 1;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), true);
    assert.equal(lock.stored?.record.holderIdentity, 'b');
    assert.equal(lock.stored?.record.leaseTransitions, 4, 'a takeover increments leaseTransitions');
    assert.notEqual(lock.stored?.record.acquireTime, '2001-01-01T00:00:00.000000Z');
  });

  it('counts the wait from when the answer arrived, not from when the request was sent', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed(record('a', '2024-01-01T00:00:00.000000Z'));
    const clock = { now: 0 };
    const b = elector('b', lock, clock);
    lock.duringGet = () => {
      clock.now += 500; // a slow read: the record may have been written while it was in flight
    };
    assert.equal(await b.tryAcquireOrRenew(never, 1000), false); // observed at 500, not 0
    lock.duringGet = undefined;
    clock.now = 15_499;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), false);
    clock.now = 15_500;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), true);
  });

  it('restarts the wait whenever the record changes (the holder renewed)', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed(record('a', '2024-01-01T00:00:00.000000Z'));
    const clock = { now: 0 };
    const b = elector('b', lock, clock);
    await b.tryAcquireOrRenew(never, 1000); // observed at 0
    clock.now = 14_000;
    lock.seed(record('a', '2024-01-01T00:00:14.000000Z')); // a renews; b has not looked yet
    clock.now = 16_000;
    assert.equal(
      await b.tryAcquireOrRenew(never, 1000),
      false,
      'b sees the change at 16 s and waits from there',
    );
    clock.now = 30_999;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), false);
    clock.now = 31_000;
    assert.equal(await b.tryAcquireOrRenew(never, 1000), true);
  });

  it('takes a released Lease (empty holder) at once', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed({ ...record('', '2024-01-01T00:00:00.000000Z'), leaseDurationSeconds: 1 });
    assert.equal(await elector('b', lock, { now: 0 }).tryAcquireOrRenew(never, 1000), true);
    assert.equal(lock.stored?.record.leaseTransitions, 4);
  });

  it('renews its own Lease without counting a transition', async () => {
    const lock = new MemoryLeaseLock();
    const clock = { now: 0 };
    const a = elector('a', lock, clock);
    await a.tryAcquireOrRenew(never, 1000);
    const acquired = lock.stored?.record.acquireTime;
    clock.now = 2_000;
    assert.equal(await a.tryAcquireOrRenew(never, 1000), true);
    assert.equal(lock.stored?.record.leaseTransitions, 0);
    assert.equal(lock.stored?.record.acquireTime, acquired);
  });

  it('fails an update made from a stale read (409 Conflict)', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed({ ...record('', '2024-01-01T00:00:00.000000Z'), leaseDurationSeconds: 1 });
    // Between b's read and b's write, c takes the released Lease.
    lock.beforeWrite = () => lock.seed(record('c', '2024-01-01T00:00:05.000000Z'));
    assert.equal(await elector('b', lock, { now: 0 }).tryAcquireOrRenew(never, 1000), false);
    assert.equal(lock.stored?.record.holderIdentity, 'c');
  });

  it('releases with an empty holder and a 1 s duration, keeping the transition count', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed({ ...record('', '2024-01-01T00:00:00.000000Z'), leaseDurationSeconds: 1 });
    const a = elector('a', lock, { now: 0 });
    await a.tryAcquireOrRenew(never, 1000);
    assert.equal(await a.release(), true);
    assert.equal(lock.stored?.record.holderIdentity, '');
    assert.equal(lock.stored?.record.leaseDurationSeconds, 1);
    assert.equal(lock.stored?.record.leaseTransitions, 4);
    assert.equal(await a.release(), false, 'releasing twice does nothing');
  });

  it('does not release a Lease someone else holds', async () => {
    const lock = new MemoryLeaseLock();
    lock.seed(record('a', '2024-01-01T00:00:00.000000Z'));
    const b = elector('b', lock, { now: 0 });
    await b.tryAcquireOrRenew(never, 1000);
    assert.equal(await b.release(), false);
    assert.equal(lock.stored?.record.holderIdentity, 'a');
  });

  it('stops leading once renewals fail past the renew deadline (real timers)', async () => {
    const lock = new MemoryLeaseLock();
    const events: string[] = [];
    const e = new LeaderElector({
      identity: 'a',
      lock,
      logger,
      leaseDurationMs: 600,
      renewDeadlineMs: 400,
      retryPeriodMs: 50,
      onStartedLeading: () => events.push('started'),
      onStoppedLeading: (outcome) => events.push(`stopped:${outcome}`),
    });
    const stop = new AbortController();
    const outcome = e.run(stop.signal);
    await waitUntil(() => e.isLeader());
    const failedAt = performance.now();
    lock.failing = true;
    assert.equal(await outcome, 'lost');
    const elapsed = performance.now() - failedAt;
    assert.ok(elapsed < 400 + 300, `gave up ${Math.round(elapsed)} ms after renewals began to fail`);
    assert.equal(e.isLeader(), false);
    assert.deepEqual(events, ['started', 'stopped:lost']);
  });

  it('stops leading at once when it sees another holder', async () => {
    const lock = new MemoryLeaseLock();
    const e = new LeaderElector({
      identity: 'a',
      lock,
      logger,
      leaseDurationMs: 600,
      renewDeadlineMs: 400,
      retryPeriodMs: 50,
      onStartedLeading: () => {},
      onStoppedLeading: () => {},
    });
    const outcome = e.run(new AbortController().signal);
    await waitUntil(() => e.isLeader());
    lock.seed(record('intruder', '2024-01-01T00:00:00.000000Z'));
    assert.equal(await outcome, 'lost');
  });
});

function record(holder: string, renewTime: string): LeaderElectionRecord {
  return {
    holderIdentity: holder,
    leaseDurationSeconds: 15,
    acquireTime: '2000-01-01T00:00:00.000000Z',
    renewTime,
    leaseTransitions: 3,
  };
}

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
