import { setTimeout as sleepFor } from 'node:timers/promises';
import type { Logger } from '../ops/logger.ts';
import { JITTER_FACTOR, type LeaseTimings } from './config.ts';
import { describeError } from './kube-client.ts';
import {
  type LeaderElectionRecord,
  LeaseConflictError,
  type LeaseLock,
  type LeaseSnapshot,
} from './lease-lock.ts';

// Leader election on a coordination.k8s.io/v1 Lease with client-go's semantics
// (k8s.io/client-go/tools/leaderelection). No maintained npm package implements them correctly, so the
// rules are spelled out here:
//
// - Writes are optimistic: create if missing (409 AlreadyExists = another replica won the race), otherwise
//   replace with the resourceVersion last read (409 Conflict = someone wrote in between).
// - A Lease held by someone else is expired only when leaseDurationSeconds have passed on OUR monotonic
//   clock since WE last saw the record change. renewTime is never compared with the local clock, so clock
//   skew between nodes cannot make two replicas lead at once.
// - Taking over from another holder (or from a released Lease) increments leaseTransitions.
// - The leader renews every retryPeriod; if no renewal succeeds within renewDeadline of the previous one
//   it has lost and must stop. leaseDuration > renewDeadline leaves a margin in which nobody leads.
// - On shutdown the leader releases: holderIdentity "" and leaseDurationSeconds 1, so a standby takes over
//   at its next retry instead of waiting the lease out.

/** Whole seconds written to the Lease; rounded up so a standby never waits less than the leader intends. */
export function leaseDurationSeconds(leaseDurationMs: number): number {
  return Math.max(1, Math.ceil(leaseDurationMs / 1000));
}

/**
 * client-go's expiry rule: a Lease is expired once `durationSeconds` have passed since this replica last
 * observed its record change (`observedAtMs`, local monotonic clock), whatever renewTime says.
 */
export function isLeaseExpired(observedAtMs: number, durationSeconds: number, nowMs: number): boolean {
  return observedAtMs + durationSeconds * 1000 <= nowMs;
}

/** client-go's wait.Jitter: `retryPeriod × (1 + random × JITTER_FACTOR)`, so candidates do not retry in step. */
export function jitteredRetry(retryPeriodMs: number, random: number = Math.random()): number {
  return retryPeriodMs * (1 + random * JITTER_FACTOR);
}

/**
 * The leader may act only while its last successful renewal is younger than the renew deadline. Measured
 * from the START of that renewal, because the write may have landed any time after it was sent; client-go
 * measures from the start of the renewal round, one retry period later, so this is slightly stricter.
 */
export function isRenewalFresh(lastRenewStartMs: number, renewDeadlineMs: number, nowMs: number): boolean {
  return nowMs < lastRenewStartMs + renewDeadlineMs;
}

/** How a run of the elector ended. */
export type ElectionOutcome = 'stopped' | 'lost';

/** Options of a LeaderElector. */
export interface LeaderElectorOptions extends LeaseTimings {
  /** This replica's holderIdentity. */
  identity: string;
  lock: LeaseLock;
  logger: Logger;
  /** Called once this replica holds the Lease. */
  onStartedLeading: () => void;
  /** Called when leading ends, either by shutdown ('stopped') or by losing the Lease ('lost'). */
  onStoppedLeading: (outcome: ElectionOutcome) => void;
  /** Monotonic clock in ms; defaults to performance.now(). */
  now?: () => number;
  /** Wall clock for the timestamps written to the Lease; defaults to Date.now(). */
  wallClock?: () => number;
}

/** Runs client-go style leader election for one replica. See the rules at the top of this file. */
export class LeaderElector {
  private readonly opts: LeaderElectorOptions;
  private readonly now: () => number;
  private readonly wallClock: () => number;
  private readonly durationSeconds: number;
  /** Last Lease read or written, and when (monotonic) its record last changed as seen from here. */
  private observed: LeaseSnapshot | null = null;
  private observedKey = '';
  private observedAt = 0;
  /** Monotonic start time of the last successful acquire/renew. */
  private lastRenewStart = Number.NEGATIVE_INFINITY;
  private leading = false;
  private answered = false;

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
    this.durationSeconds = leaseDurationSeconds(opts.leaseDurationMs);
  }

  /** True while this replica leads AND its last renewal is fresh; check before every leader-only action. */
  isLeader(): boolean {
    return this.leading && isRenewalFresh(this.lastRenewStart, this.opts.renewDeadlineMs, this.now());
  }

  /** True once the API server has answered at least one election attempt (the replica's readiness). */
  hasRunCycle(): boolean {
    return this.answered;
  }

  /** holderIdentity of the Lease as last seen ('' if none or released). */
  currentHolder(): string {
    return this.observed?.record.holderIdentity ?? '';
  }

  /**
   * Campaigns until this replica leads, then renews until `signal` aborts ('stopped') or renewal fails past
   * the renew deadline or another holder is seen ('lost'). Never rejects.
   */
  async run(signal: AbortSignal): Promise<ElectionOutcome> {
    const { logger, identity, retryPeriodMs, renewDeadlineMs } = this.opts;
    logger.info({ lease: this.opts.lock.description, identity }, 'campaigning for leadership');
    while (!(await this.tryAcquireOrRenew(signal, renewDeadlineMs))) {
      if (!(await pause(jitteredRetry(retryPeriodMs), signal))) return 'stopped';
    }
    if (signal.aborted) return this.stopLeading('stopped');
    this.leading = true;
    logger.info({ lease: this.opts.lock.description, identity }, 'started leading');
    this.opts.onStartedLeading();

    for (;;) {
      if (!(await pause(retryPeriodMs, signal))) return this.stopLeading('stopped');
      for (;;) {
        const remaining = this.lastRenewStart + renewDeadlineMs - this.now();
        if (remaining <= 0) {
          logger.error({ renewDeadlineMs }, 'could not renew the lease within the renew deadline');
          return this.stopLeading('lost');
        }
        const renewed = await this.tryAcquireOrRenew(signal, remaining);
        if (signal.aborted) return this.stopLeading('stopped');
        if (renewed) break;
        const holder = this.currentHolder();
        if (holder !== identity) {
          logger.error({ holder }, 'the lease is held by another replica');
          return this.stopLeading('lost');
        }
        if (!(await pause(Math.min(retryPeriodMs, remaining), signal))) return this.stopLeading('stopped');
      }
    }
  }

  /**
   * Gives the Lease up so a standby takes over at its next retry instead of waiting the lease out. Call
   * after run() has returned. Safe to call when not leading (does nothing) and to call twice.
   */
  async release(timeoutMs = 5000): Promise<boolean> {
    const { identity, lock, logger } = this.opts;
    this.leading = false;
    const signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
    for (let attempt = 0; attempt < 2; attempt++) {
      const current = this.observed;
      if (!current || current.record.holderIdentity !== identity) return false;
      const at = new Date(this.wallClock()).toISOString();
      const record: LeaderElectionRecord = {
        holderIdentity: '',
        leaseDurationSeconds: 1,
        acquireTime: at,
        renewTime: at,
        leaseTransitions: current.record.leaseTransitions,
      };
      try {
        this.observe(await lock.update(current, record, signal), this.now());
        logger.info({ lease: lock.description }, 'released the lease');
        return true;
      } catch (err) {
        if (!(err instanceof LeaseConflictError)) {
          logger.warn({ err: describeError(err) }, 'could not release the lease');
          return false;
        }
        // A renewal aborted on shutdown may still have been written: re-read and retry if it is still ours.
        try {
          const fresh = await lock.get(signal);
          if (!fresh) return false;
          this.observe(fresh, this.now());
        } catch (readErr) {
          logger.warn({ err: describeError(readErr) }, 'could not release the lease');
          return false;
        }
      }
    }
    return false;
  }

  private stopLeading(outcome: ElectionOutcome): ElectionOutcome {
    if (this.leading) {
      this.leading = false;
      this.opts.onStoppedLeading(outcome);
    }
    return outcome;
  }

  private observe(snapshot: LeaseSnapshot, at: number): void {
    const key = JSON.stringify(snapshot.record);
    const previousHolder = this.observed?.record.holderIdentity;
    this.observed = snapshot;
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = at;
    }
    const holder = snapshot.record.holderIdentity;
    if (holder !== previousHolder && holder !== this.opts.identity) {
      this.opts.logger.info(
        { holder: holder || null },
        holder ? 'observed a new leader' : 'the lease was released',
      );
    }
  }

  /**
   * One attempt (client-go's tryAcquireOrRenew): true if this replica holds the Lease afterwards. run()
   * calls it on the retry schedule; it is public so the timing rules can be tested step by step.
   */
  async tryAcquireOrRenew(stop: AbortSignal, timeoutMs: number): Promise<boolean> {
    const { identity, lock, logger } = this.opts;
    // AbortSignal.timeout() insists on a whole number of milliseconds.
    const signal = AbortSignal.any([stop, AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)))]);
    const start = this.now();
    const at = new Date(this.wallClock()).toISOString();
    try {
      const current = await lock.get(signal);
      this.answered = true;
      if (!current) {
        const created = await lock.create(
          {
            holderIdentity: identity,
            leaseDurationSeconds: this.durationSeconds,
            acquireTime: at,
            renewTime: at,
            leaseTransitions: 0,
          },
          signal,
        );
        this.observe(created, this.now());
        this.lastRenewStart = start;
        return true;
      }
      // Observed when the answer arrived, not when the attempt began (as client-go's setObservedRecord):
      // the later time is the safe one, since the record may have been written while the GET was in flight.
      this.observe(current, this.now());
      const old = current.record;
      const heldByOther = old.holderIdentity !== '' && old.holderIdentity !== identity;
      const duration = old.leaseDurationSeconds > 0 ? old.leaseDurationSeconds : this.durationSeconds;
      if (heldByOther && !isLeaseExpired(this.observedAt, duration, start)) return false;

      const next: LeaderElectionRecord =
        old.holderIdentity === identity
          ? { ...old, leaseDurationSeconds: this.durationSeconds, renewTime: at }
          : {
              holderIdentity: identity,
              leaseDurationSeconds: this.durationSeconds,
              acquireTime: at,
              renewTime: at,
              leaseTransitions: old.leaseTransitions + 1,
            };
      this.observe(await lock.update(current, next, signal), this.now());
      this.lastRenewStart = start;
      return true;
    } catch (err) {
      if (err instanceof LeaseConflictError) {
        logger.debug({ err: err.message }, 'another replica wrote the lease first');
      } else if (!stop.aborted) {
        logger.warn({ err: describeError(err) }, 'leader election attempt failed');
      }
      return false;
    }
  }
}

/** Waits `ms`; resolves false at once if `signal` aborts (and true otherwise). */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleepFor(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
