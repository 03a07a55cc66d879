import { Worker } from 'node:worker_threads';
import { stdioWriter } from './logger.ts';

/**
 * The watchdog's own code, run in a worker thread (plain CommonJS so it needs no TypeScript loader, from
 * the sources or from dist/ alike). It sleeps in Atomics.wait until the deadline, independent of the
 * main thread; if the process is still alive then, it makes one attempt to write a line to stderr and
 * SIGKILLs the process, even if that write never completes.
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
const { write } = require('node:fs');
const { state, deadlineAt, steps, message, stderr } = workerData;
const left = deadlineAt - Date.now();
// Nothing ever notifies state[0]: this is a sleep no event loop can delay.
if (left > 0) Atomics.wait(state, 0, 0, left);
const i = Atomics.load(state, 1);
const line = message.replace('{step}', i >= 0 && i < steps.length ? steps[i] : 'exit') + '\\n';
const kill = () => process.kill(process.pid, 'SIGKILL');
setTimeout(kill, 200);
write(stderr, line, kill);
`;

/** What the watchdog needs to know. */
export interface WatchdogOptions {
  /** From now until the process is killed. */
  deadlineMs: number;
  /** The stderr line, `{step}` replaced by the name of the step in progress (or `exit`). */
  message: string;
  /** Names of the steps `Watchdog.step` refers to by index. */
  steps?: string[];
  /** Told if the watchdog could not be started or failed. */
  onError: (err: unknown) => void;
}

/** A running watchdog: tell it which step the process is in. */
export interface Watchdog {
  step(index: number): void;
}

/**
 * Kills this process (SIGKILL, after one line on stderr) if it is still alive `deadlineMs` from now.
 *
 * Why a worker thread and not a timer: a timer runs on the main thread, which is exactly what is stuck
 * when a synchronous loop (such as a log flush retrying a write forever) or a blocking write holds it;
 * no timer, signal handler or `process.exit()` runs then. A worker thread has its own event loop and can
 * still signal the process. Why SIGKILL: a worker cannot end the process with an exit code of its own
 * (`process.exit()` in a worker ends only the worker), and any gentler signal would be handled by the
 * stuck main thread. Why not a child process: it would survive us and could kill a reused PID; a thread
 * dies with the process, so a normal exit needs no clean-up. Limit: once `process.exit()` has begun
 * tearing the process down, workers are already stopped; nothing intake writes can block there, because
 * it writes stdout and stderr without blocking (`src/ops/logger.ts`).
 */
export function armWatchdog(opts: WatchdogOptions): Watchdog {
  // [0]: what the watchdog sleeps on; [1]: index of the step in progress (-1 before the first).
  const state = new Int32Array(new SharedArrayBuffer(8));
  state[1] = -1;
  try {
    const worker = new Worker(WATCHDOG_SOURCE, {
      eval: true,
      workerData: {
        state,
        deadlineAt: Date.now() + opts.deadlineMs,
        steps: opts.steps ?? [],
        message: opts.message,
        stderr: stdioWriter(2),
      },
      // A small heap: the watchdog must never be what runs a process out of memory.
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
    });
    // It must never be what keeps a process alive either.
    worker.unref();
    // A watchdog that failed must not end the process it guards; the main thread's timers still apply.
    worker.on('error', opts.onError);
  } catch (err) {
    // No thread could be started (out of memory or threads): the main thread's timers still apply.
    opts.onError(err);
  }
  return {
    step(index) {
      Atomics.store(state, 1, index);
    },
  };
}
