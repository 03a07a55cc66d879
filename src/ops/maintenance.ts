import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

/**
 * Periodic jobs (partitions, data keys, Idempotency-Key pruning, queue depth). A failure is logged
 * with the job's name and counted in `intake_maintenance_failures_total{job}` (an alert watches it),
 * never swallowed: a partition that is not created today stops ingestion in a week.
 */
export class Maintenance {
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Runs `fn` every `ms` (and once now when `now` is set); failures are logged and counted. */
  every(name: string, ms: number, fn: () => Promise<unknown>, opts: { now?: boolean } = {}): void {
    const run = () => {
      fn().catch((err: unknown) => {
        this.metrics.maintenanceFailures.inc({ task: name });
        this.log.error({ err, task: name }, 'maintenance task failed; it runs again on its next tick');
      });
    };
    const t = setInterval(run, ms);
    t.unref();
    this.timers.push(t);
    if (opts.now) run();
  }

  /** Stops every job (runs in progress finish on their own). Idempotent. */
  stop(): void {
    for (const t of this.timers.splice(0)) clearInterval(t);
  }
}
