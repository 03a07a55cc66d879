import type { Logger } from './logger.ts';

/** Options of one shutdown step. */
export interface ShutdownStepOptions {
  /**
   * Runs even after `abort()` (a second Ctrl-C), within what is left of the deadline: for steps whose
   * absence would leave something behind, such as an embedded PostgreSQL that would block the next start.
   */
  evenIfAborted?: boolean;
}

/** What a shutdown did, for the process exit path to choose its exit code and last line. */
export interface ShutdownOutcome {
  reason: string;
  /** The step that was running when the deadline passed or `abort()` was called. */
  abandoned?: string;
  /** Steps never started because the deadline had passed or the shutdown was aborted. */
  skipped: string[];
  /** Steps that threw or rejected (they ended, unlike an abandoned step). */
  failed: string[];
  /** `abort()` was called. */
  aborted: boolean;
  /** Time from the start of the shutdown to its end. */
  ms: number;
}

interface Step {
  name: string;
  fn: () => Promise<void>;
  evenIfAborted: boolean;
}

/**
 * Staged, bounded, idempotent shutdown. Steps run in order within one overall deadline; the step running
 * when the deadline passes is abandoned (its promise is no longer awaited) and the steps after it are
 * skipped, so the process still exits inside the pod's termination grace period. `run` never rejects:
 * its outcome says what was abandoned, skipped or failed. Calling `run` again returns the same promise.
 *
 * Two kinds of step: those `add`ed run first, in the order added (readiness off, a delay); then the
 * releases, last registered first. A resource registers its release as soon as it is acquired, so a
 * start that fails half-way and a stop unwind the same stack, and each resource is released before
 * what it was built on (graphile-worker's withReleasers).
 */
export class Shutdown {
  private readonly steps: Step[] = [];
  /** Releases in the order registered; they run in reverse. */
  private readonly releases: Step[] = [];
  private done: Promise<ShutdownOutcome> | undefined;
  private aborted = false;
  private abortCurrent: (() => void) | undefined;
  /** Told the index of each step as it starts (the watchdog names the step the process is stuck in). */
  onStep: ((index: number) => void) | undefined;

  constructor(
    private readonly log: Logger,
    /** The overall deadline, from `run` to the end of the last step. */
    readonly timeoutMs: number,
  ) {}

  /** Adds a step; steps run in the order added, before every release. */
  add(name: string, fn: () => Promise<void>, opts: ShutdownStepOptions = {}): void {
    this.steps.push({ name, fn, evenIfAborted: opts.evenIfAborted ?? false });
  }

  /** Registers how to release a resource just acquired; releases run after the steps, last first. */
  release(name: string, fn: () => Promise<void>, opts: ShutdownStepOptions = {}): void {
    this.releases.push({ name, fn, evenIfAborted: opts.evenIfAborted ?? false });
  }

  /** The names of the steps and releases, in the order they run. */
  get stepNames(): string[] {
    return this.ordered().map((s) => s.name);
  }

  private ordered(): Step[] {
    return [...this.steps, ...this.releases.toReversed()];
  }

  get started(): boolean {
    return this.done !== undefined;
  }

  run(reason: string): Promise<ShutdownOutcome> {
    this.done ??= this.execute(reason);
    return this.done;
  }

  /**
   * Stops waiting for the step in progress and skips every later step not marked `evenIfAborted`. What
   * was acknowledged stays safe: unsettled messages stay queued and are redelivered.
   */
  abort(): void {
    this.aborted = true;
    this.abortCurrent?.();
  }

  private async execute(reason: string): Promise<ShutdownOutcome> {
    const startedAt = Date.now();
    const deadline = startedAt + this.timeoutMs;
    const outcome: ShutdownOutcome = { reason, skipped: [], failed: [], aborted: false, ms: 0 };
    // A timer may fire a millisecond before Date.now() reaches the deadline (timers and the wall clock
    // round differently), so a step that timed out ends the run by itself rather than by the clock.
    let expired = false;
    this.log.info({ reason, timeoutMs: this.timeoutMs }, 'shutting down');
    for (const [index, step] of this.ordered().entries()) {
      const left = deadline - Date.now();
      if (expired || left <= 0 || (this.aborted && !step.evenIfAborted)) {
        outcome.skipped.push(step.name);
        continue;
      }
      this.onStep?.(index);
      const started = Date.now();
      const result = await this.race(step, left);
      if (result === 'done') {
        this.log.debug({ step: step.name, ms: Date.now() - started }, 'shutdown step done');
      } else if (result === 'timeout' || result === 'aborted') {
        if (result === 'timeout') expired = true;
        outcome.abandoned ??= step.name;
        this.log.error({ step: step.name, ms: Date.now() - started, why: result }, 'shutdown step abandoned');
      } else {
        outcome.failed.push(step.name);
        this.log.error({ step: step.name, err: result.err }, 'shutdown step failed');
      }
    }
    outcome.aborted = this.aborted;
    outcome.ms = Date.now() - startedAt;
    if (outcome.abandoned || outcome.skipped.length) this.log.error(outcome, 'shutdown incomplete');
    else this.log.info({ ms: outcome.ms, failed: outcome.failed }, 'shutdown complete');
    return outcome;
  }

  private race(step: Step, leftMs: number): Promise<'done' | 'timeout' | 'aborted' | { err: unknown }> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), leftMs);
      const settle = (r: 'done' | 'timeout' | 'aborted' | { err: unknown }) => {
        clearTimeout(timer);
        this.abortCurrent = undefined;
        resolve(r);
      };
      if (!step.evenIfAborted) this.abortCurrent = () => settle('aborted');
      // A step that throws synchronously fails like one that rejects.
      Promise.resolve()
        .then(step.fn)
        .then(
          () => settle('done'),
          (err: unknown) => settle({ err }),
        );
    });
  }
}
