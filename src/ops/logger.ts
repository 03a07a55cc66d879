import { constants, fstatSync, openSync } from 'node:fs';
import { isatty } from 'node:tty';
import { type Logger, type LoggerOptions, pino } from 'pino';
import sonicBoom from 'sonic-boom';

export type { Logger };

// sonic-boom is CommonJS: from ESM its class is a property of the default export.
const { SonicBoom } = sonicBoom;
type SonicBoom = InstanceType<typeof SonicBoom>;

/**
 * Log lines held in memory while stdout does not take them (a slow, stopped or full reader). Beyond
 * this the newest lines are dropped and counted: memory stays bounded and nothing waits on the reader.
 */
export const LOG_BUFFER_BYTES = 4 * 1024 * 1024;

/** Write errors after which stdout will never take another line: its reader is gone. */
const READER_GONE = new Set(['EPIPE', 'ECONNRESET', 'ENOTCONN', 'EBADF', 'EIO']);

/**
 * The process's stdout as pino's destination: sonic-boom (asynchronous writes, lines written while a
 * write is pending go out together: a synchronous write per access-log line costs the API, docs/capacity-plan.md#measurements-behind-choices-in-the-code)
 * with a bounded buffer, plus the accounting sonic-boom does not do: how many lines were dropped, and
 * how many are still waiting. It is built here rather than with `pino.destination()` because pino
 * registers a synchronous flush on process exit for its own destinations, and `flushSync()` sleeps and
 * retries a write the reader does not take (sonic-boom 4: on any error; 5: on EAGAIN) for ever: the
 * process never exits. Nothing here waits on the reader without bound: the exit path gives the buffer
 * what is left of its deadline (`drainLogs`) and drops the rest.
 */
class StdoutSink {
  private readonly boom: SonicBoom;
  private gone = false;
  private dropped = 0;
  private refused = false;
  // Byte offset (in bytes accepted so far) at which each buffered line ends, oldest first: sonic-boom
  // reports bytes written, and this turns them into whole lines written.
  private ends: number[] = [];
  private head = 0;
  private accepted = 0;
  private written = 0;

  constructor(fd: number, sync: boolean) {
    this.boom = new SonicBoom({ fd, sync, maxLength: LOG_BUFFER_BYTES });
    this.boom.on('drop', () => {
      this.refused = true;
    });
    this.boom.on('write', (n: number) => this.onWritten(n));
    this.boom.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
  }

  /** pino's entry point: one call per line. */
  write(line: string): boolean {
    if (this.gone) {
      this.dropped++;
      return true;
    }
    const start = this.accepted;
    this.accepted += Buffer.byteLength(line);
    this.ends.push(this.accepted);
    this.refused = false;
    this.boom.write(line);
    if (this.refused) {
      this.ends.pop();
      this.accepted = start;
      this.dropped++;
    }
    return true;
  }

  /** For pino's `logger.flush(cb)`. */
  flush(cb?: (err?: Error) => void): void {
    if (this.gone || this.pending === 0) cb?.();
    else this.boom.flush(cb);
  }

  get pending(): number {
    return this.ends.length - this.head;
  }

  get droppedLines(): number {
    return this.dropped;
  }

  /** Waits at most `timeoutMs` for the buffered lines to be written; returns how many were given up. */
  async drain(timeoutMs: number): Promise<number> {
    if (this.pending > 0 && !this.gone && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.boom.flush(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const left = this.pending;
    this.dropped += left;
    this.ends = [];
    this.head = 0;
    return left;
  }

  private onWritten(n: number): void {
    this.written += n;
    while (this.head < this.ends.length && this.ends[this.head]! <= this.written) this.head++;
    if (this.head > 1024 && this.head * 2 > this.ends.length) {
      this.ends = this.ends.slice(this.head);
      this.head = 0;
    }
  }

  private onError(err: NodeJS.ErrnoException): void {
    if (!READER_GONE.has(err.code ?? '')) {
      // Anything else (a full disk behind a redirect, say) may pass: the lines stay buffered, bounded by
      // maxLength, and the next line tries again.
      return;
    }
    this.gone = true;
    this.dropped += this.pending;
    this.ends = [];
    this.head = 0;
    this.boom.destroy();
  }
}

let sink: StdoutSink | undefined;
const writers = new Map<number, number>();

/**
 * One sink per process, shared by every logger. Also makes sure no write to stdout or stderr can block:
 * on a blocking descriptor whose reader has stopped, a write never returns, and it would hold a
 * thread-pool thread for ever (process.exit() waits for the thread pool: the process could never
 * exit) or the main thread (nothing else runs, not even a signal handler). What intake writes (log
 * lines, the exit path's last lines, the watchdog's line) goes through `stdioWriter`, never through a
 * descriptor whose blocking mode another process can change.
 * - A terminal or a pipe is opened again, non-blocking, for intake alone (the shared flags stay as they
 *   were: a terminal turned non-blocking would surprise the shell): a write to a full one fails with
 *   EAGAIN at once, and sonic-boom retries it on a timer; Ctrl-S, a stopped terminal or a reader that
 *   stopped then costs lines, not the process.
 * - A socket cannot be opened again: it is switched to non-blocking by libuv when
 *   `process.stdout`/`process.stderr` open it, as for any Node program that writes to them.
 * - A regular file never blocks for long, and is written as it is (opening it again would lose O_APPEND's
 *   shared offset).
 * `process.stdout`/`process.stderr` (console.log, Node's own warnings) keep the shared descriptors.
 */
function stdoutSink(logFd: 1 | 2 = 1): StdoutSink {
  if (!sink) {
    for (const [fd, stream] of [
      [1, () => process.stdout],
      [2, () => process.stderr],
    ] as const) {
      if (isPipe(fd)) stream().on('error', ignoreReaderGone);
    }
    const fd = stdioWriter(logFd);
    // A terminal that could not be opened again is written synchronously, as console.log does.
    sink = new StdoutSink(fd, fd === logFd && isatty(logFd));
  }
  return sink;
}

/**
 * The descriptor intake writes `fd` (1 or 2) through: its own non-blocking one for a terminal or a pipe.
 *
 * Why not the inherited descriptor for a pipe: O_NONBLOCK belongs to the open file description, which
 * every process holding the pipe shares, and any of them may clear it. libuv does so in every child it
 * spawns with the pipe as its stdio (Node's spawn with `'inherit'`: esbuild's service under tsx, which a
 * first run in a fresh clone starts, is one); a write to the full pipe then never returned and held the
 * process past its deadline until the watchdog killed it. A description of our own keeps the flag we set.
 */
export function stdioWriter(fd: 1 | 2): number {
  let w = writers.get(fd);
  if (w === undefined) {
    w = fd;
    if (isatty(fd) || isFifo(fd)) {
      try {
        // O_CLOEXEC is added by libuv: no child inherits this descriptor.
        w = openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
      } catch {
        // No /proc, not allowed, or a pipe whose reader is gone (ENXIO; writes fail with EPIPE anyway):
        // the inherited descriptor.
      }
    }
    writers.set(fd, w);
  }
  return w;
}

/** A pipe, named or not (fstat reports both as FIFOs). */
function isFifo(fd: number): boolean {
  try {
    return fstatSync(fd).isFIFO();
  } catch {
    return false;
  }
}

function isPipe(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

/** console.log output to a reader that has gone is dropped like log lines; any other error is not ours. */
function ignoreReaderGone(err: NodeJS.ErrnoException): void {
  if (!READER_GONE.has(err.code ?? '')) throw err;
}

/** Log lines dropped so far because stdout did not take them in time (`intake_log_lines_dropped_total`). */
export function droppedLogLines(): number {
  return sink?.droppedLines ?? 0;
}

/**
 * Gives the buffered log lines, and whatever console.log/console.error queued on a pipe, at most
 * `timeoutMs` to reach stdout and stderr; the log lines left are dropped and counted. Returns how many
 * were dropped here. Never blocks: the exit path calls it with what is left of its deadline.
 */
export async function drainLogs(timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const dropped = sink ? await sink.drain(timeoutMs) : 0;
  for (const stream of [process.stdout, process.stderr]) {
    const left = deadline - Date.now();
    if (stream.writableLength === 0 || left <= 0) continue;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, left);
      stream.once('drain', done);
      function done() {
        clearTimeout(timer);
        stream.off('drain', done);
        resolve();
      }
    });
  }
  return dropped;
}

/**
 * Structured JSON logs to stdout (one object per line), as every intake process writes them.
 * Paths that could carry personal data or message bodies are censored here as a last line of defence:
 * code must not log them in the first place (docs/contract.md §5, docs/logging.md). Exact paths only: wildcard redaction ran on
 * every line and cost more CPU than anything else in the access log.
 */
/**
 * `fd` 2 sends the log lines to stderr: for one-shot commands, whose stdout is their result (`doctor
 * --json | jq`). Services log to stdout. One sink per process: the first logger created chooses.
 */
export function createLogger(options: { level?: string; name?: string; fd?: 1 | 2 } = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? 'info',
    base: { service: options.name ?? 'intake' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'body',
        'message',
        '["sent-from-ip"]',
        'ip',
        'req.body',
      ],
      censor: '[redacted]',
    },
  };
  return pino(opts, stdoutSink(options.fd));
}
