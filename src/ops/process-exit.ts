import { writeSync } from 'node:fs';
import { constants } from 'node:os';
import { drainLogs, type Logger, stdioWriter } from './logger.ts';
import type { Shutdown, ShutdownOutcome } from './shutdown.ts';
import { armWatchdog } from './watchdog.ts';

/**
 * How every intake process ends (`intake start|api|worker|migrate|doctor|smoke|…` and the pod watcher):
 * signals, the shutdown deadline, exit codes, and the last log lines. The rule is that the process is
 * gone within its deadline whatever state stdout and stderr are in: log lines that cannot be written in
 * time are dropped and counted (`src/ops/logger.ts`), never waited on without bound.
 */

/** Exit codes (sysexits where one fits). A second signal exits with 128 + its number, as a shell reports it. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** The shutdown passed its deadline and a step was abandoned (EX_SOFTWARE). */
  deadline: 70,
  /** Invalid configuration (EX_CONFIG). */
  config: 78,
} as const;

/** Longest the last log lines may take to reach stdout when a one-shot command exits. */
export const EXIT_DRAIN_MS = 2000;
/** Longest they may take after a shutdown; less if the shutdown used its whole deadline. */
const SHUTDOWN_DRAIN_MS = 1000;
/**
 * Time after its deadline before the watchdog kills a process whose main thread does not answer: enough
 * for a main thread that is merely starved of CPU to finish exiting by itself.
 */
export const WATCHDOG_GRACE_MS = 2500;

/**
 * Writes one line to stderr with one attempt, never waiting: on a full pipe it is lost. The only
 * output of the exit path that does not go through the logger, for the line an operator must see.
 */
export function lastLine(text: string): void {
  try {
    writeSync(stdioWriter(2), `${text}\n`);
  } catch {
    // EAGAIN (full pipe) or EPIPE (reader gone): best effort by definition, nobody is left to tell.
  }
}

/**
 * Exits with `code` once the buffered log lines are written or `drainMs` has passed (the rest is
 * dropped), after printing `line` (if any) on stderr. A watchdog kills the process if even that hangs.
 */
export async function exitProcess(
  code: number,
  opts: {
    name: string;
    line?: string;
    drainMs?: number;
    log?: Logger;
    /** false when the caller's own watchdog already covers this exit. */
    watchdog?: boolean;
  },
): Promise<never> {
  const drainMs = Math.max(opts.drainMs ?? EXIT_DRAIN_MS, 0);
  if (opts.watchdog !== false) {
    armWatchdog({
      deadlineMs: drainMs + WATCHDOG_GRACE_MS,
      message: `${opts.name}: exit (code ${code}) not done ${drainMs + WATCHDOG_GRACE_MS} ms later: killing the process (SIGKILL)`,
      onError: (err) => opts.log?.warn({ err }, 'exit watchdog unavailable'),
    });
  }
  const dropped = await drainLogs(drainMs);
  if (opts.line) lastLine(opts.line);
  if (dropped > 0) lastLine(`${opts.name}: ${dropped} log lines dropped: stdout did not take them in time`);
  process.exit(code);
}

/** What `handleSignals` needs. */
export interface SignalExitOptions {
  /** Program name, first word of the stderr line: `intake` or `pod-watcher`. */
  name: string;
  log: Logger;
  shutdown: Shutdown;
}

/** Ends the process through its shutdown: `code` if the shutdown completed, non-zero otherwise. */
export type ShutdownAndExit = (reason: string, code: number) => Promise<never>;

/**
 * SIGTERM or SIGINT starts the shutdown (readiness off, drain, flush) and exits 0 when it completes.
 * A second signal abandons the drain (steps marked `evenIfAborted` still run) and exits 128 + signal;
 * a third exits at once. Whatever happens, the process exits within the shutdown's deadline; a step
 * still running then is abandoned, the exit code is 70 and one line on stderr names the step. If the
 * main thread itself is stuck, a watchdog thread kills the process shortly after the deadline.
 * Returns the same path for other reasons to stop (the pod watcher losing its lease).
 */
export function handleSignals(opts: SignalExitOptions): ShutdownAndExit {
  let signals = 0;
  let abortCode: number | undefined;
  let exiting: Promise<never> | undefined;

  const shutdownAndExit: ShutdownAndExit = (reason, code) => {
    exiting ??= runAndExit(opts, reason, code, () => abortCode);
    return exiting;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    const signalCode = 128 + (constants.signals[signal] ?? 0);
    if (signals === 1) {
      void shutdownAndExit(signal, ExitCode.ok);
    } else if (signals === 2) {
      // "Now": nothing acknowledged is lost, unsettled messages stay queued and are redelivered.
      opts.log.warn({ signal }, 'second signal: abandoning the drain');
      abortCode = signalCode;
      opts.shutdown.abort();
    } else {
      lastLine(`${opts.name}: third signal (${signal}): exiting without waiting for the shutdown`);
      process.exit(signalCode);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return shutdownAndExit;
}

async function runAndExit(
  opts: SignalExitOptions,
  reason: string,
  code: number,
  abortCode: () => number | undefined,
): Promise<never> {
  const { shutdown, name } = opts;
  const deadlineAt = Date.now() + shutdown.timeoutMs;
  const watchdog = armWatchdog({
    deadlineMs: shutdown.timeoutMs + WATCHDOG_GRACE_MS,
    steps: shutdown.stepNames,
    message: `${name}: shutdown still running ${WATCHDOG_GRACE_MS} ms after its ${shutdown.timeoutMs} ms deadline, stuck in step "{step}": killing the process (SIGKILL)`,
    onError: (err) => opts.log.warn({ err }, 'shutdown watchdog unavailable; the deadline relies on timers'),
  });
  shutdown.onStep = (index) => watchdog.step(index);
  const outcome = await shutdown.run(reason);
  const exit = exitFor(outcome, code, abortCode(), shutdown.timeoutMs, name);
  opts.log.info({ code: exit.code }, 'exiting');
  return exitProcess(exit.code, {
    name,
    log: opts.log,
    // What is left of the deadline; the watchdog armed above still covers this.
    drainMs: Math.min(SHUTDOWN_DRAIN_MS, Math.max(deadlineAt - Date.now(), 100)),
    watchdog: false,
    ...(exit.line ? { line: exit.line } : {}),
  });
}

/** The exit code and stderr line a shutdown's outcome calls for. */
export function exitFor(
  outcome: ShutdownOutcome,
  code: number,
  abortCode: number | undefined,
  timeoutMs: number,
  name: string,
): { code: number; line?: string } {
  if (outcome.aborted) return { code: abortCode ?? ExitCode.failure };
  if (outcome.abandoned !== undefined || outcome.skipped.length > 0) {
    const skipped = outcome.skipped.length
      ? `; skipped ${outcome.skipped.map((s) => `"${s}"`).join(', ')}`
      : '';
    return {
      code: ExitCode.deadline,
      line: `${name}: shutdown passed its ${timeoutMs} ms deadline: abandoned step "${outcome.abandoned ?? outcome.skipped[0]}"${skipped}; exit code ${ExitCode.deadline}`,
    };
  }
  if (outcome.failed.length > 0 && code === ExitCode.ok) return { code: ExitCode.failure };
  return { code };
}
