import type { Logger } from './logger.ts';

/**
 * Staged, bounded, idempotent shutdown. Steps run in order; each gets what is left of the overall
 * deadline, and a step that overruns is logged and abandoned so the process still exits inside the
 * pod's termination grace period. Calling `run` again returns the same promise.
 */
export class Shutdown {
  private steps: Array<{ name: string; fn: () => Promise<void> }> = [];
  private done: Promise<void> | undefined;

  constructor(
    private readonly log: Logger,
    private readonly timeoutMs: number,
  ) {}

  /** Adds a step; steps run in the order added. */
  add(name: string, fn: () => Promise<void>): void {
    this.steps.push({ name, fn });
  }

  get started(): boolean {
    return this.done !== undefined;
  }

  run(reason: string): Promise<void> {
    this.done ??= this.execute(reason);
    return this.done;
  }

  private async execute(reason: string): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    this.log.info({ reason, timeoutMs: this.timeoutMs }, 'shutting down');
    for (const step of this.steps) {
      const left = deadline - Date.now();
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          step.fn(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`timed out after ${Math.max(left, 0)} ms`)),
              Math.max(left, 1),
            );
          }),
        ]);
        this.log.debug({ step: step.name, ms: Date.now() - started }, 'shutdown step done');
      } catch (err) {
        this.log.error({ step: step.name, err }, 'shutdown step failed');
      } finally {
        clearTimeout(timer);
      }
    }
    this.log.info('shutdown complete');
  }
}
