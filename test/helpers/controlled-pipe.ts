import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../harness/db.ts';

/**
 * A pipe (a named FIFO) whose reading end the test holds, to give a child process as its stdout or
 * stderr: the test reads it, stops reading (the pipe fills and the writer's writes block or get
 * EAGAIN), or closes it (the writer gets EPIPE). The child's end is an ordinary blocking write end,
 * as a shell's `| less` or a supervisor's pipe would be. Nothing here reads on its own once stopped.
 */
export interface ControlledPipe {
  /** The write end, for `spawn`'s `stdio`. Close it in the test after spawning (`afterSpawn`). */
  readonly writeFd: number;
  /** Everything read so far (the last 1 MiB). */
  text(): string;
  /** Bytes read so far. */
  bytesRead(): number;
  /** Drops the test's copy of the write end once the child has its own. */
  afterSpawn(): void;
  /** Stops reading: from now on the pipe fills and stays full. */
  stopReading(): void;
  /** Fills the pipe to capacity without reading (a reader that stopped before the child started). */
  fill(): void;
  /** Closes the reading end: every later write by the child fails with EPIPE. */
  closeReader(): void;
  /**
   * Makes the child's end blocking again, as another process sharing it can at any time: libuv clears
   * O_NONBLOCK on the stdio of every child it spawns (Node's spawn with `'inherit'`, e.g. esbuild's
   * service under tsx), and the flag belongs to the open file description they all share. Needs the
   * write end, so spawn with `holdWriteEnds`.
   */
  clearNonBlocking(): void;
  /** Closes whatever is still open and removes the FIFO. */
  dispose(): void;
}

export function controlledPipe(): ControlledPipe {
  const dir = mkdtempSync(join(tmpdir(), 'intake-pipe-'));
  const path = join(dir, 'fifo');
  execFileSync('mkfifo', [path]);
  // Non-blocking read end (so reads here never stall the test), then a blocking write end for the child.
  let readFd: number | undefined = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let writeFd: number | undefined = openSync(path, constants.O_WRONLY);
  let text = '';
  let read = 0;
  const chunk = Buffer.alloc(65_536);
  const drain = () => {
    if (readFd === undefined) return;
    for (;;) {
      let n: number;
      try {
        n = readSync(readFd, chunk, 0, chunk.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return;
        throw err;
      }
      if (n === 0) return;
      read += n;
      text = (text + chunk.toString('utf8', 0, n)).slice(-1_048_576);
    }
  };
  let reader: NodeJS.Timeout | undefined = setInterval(drain, 10);
  const stop = () => {
    clearInterval(reader);
    reader = undefined;
  };
  return {
    writeFd,
    text() {
      drain();
      return text;
    },
    bytesRead: () => read,
    afterSpawn() {
      if (writeFd !== undefined) closeSync(writeFd);
      writeFd = undefined;
    },
    stopReading: stop,
    fill() {
      stop();
      const w = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
      try {
        // Whole pages first, then single bytes: a write of up to a page is all or nothing.
        for (const size of [4096, 1]) {
          const block = Buffer.alloc(size, 'x');
          try {
            for (;;) writeSync(w, block);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          }
        }
      } finally {
        closeSync(w);
      }
    },
    clearNonBlocking() {
      if (writeFd === undefined)
        throw new Error('clearNonBlocking needs the write end: spawn with holdWriteEnds');
      const r = spawnSync('true', { stdio: ['ignore', writeFd, 'ignore'] });
      if (r.status !== 0) throw new Error(`could not run true: ${r.error ?? r.status}`);
    },
    closeReader() {
      stop();
      if (readFd !== undefined) closeSync(readFd);
      readFd = undefined;
    },
    dispose() {
      stop();
      if (readFd !== undefined) closeSync(readFd);
      if (writeFd !== undefined) closeSync(writeFd);
      readFd = writeFd = undefined;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How a child process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What a child's stdout or stderr pipe does from the start: read, full (reader stopped) or gone (EPIPE). */
export type PipeState = 'read' | 'full' | 'gone';

/** A child process whose stdout and stderr are controlled pipes. */
export interface PipedProcess {
  child: ChildProcess;
  out: ControlledPipe;
  err: ControlledPipe;
  exited: Promise<Exit>;
  /** The exit, or undefined if the process is still running `ms` from now. */
  exitWithin(ms: number): Promise<Exit | undefined>;
  /** Polls `url`/readyz until it answers 200; fails at once if the process exits first. */
  waitReady(url: string, timeoutMs?: number): Promise<void>;
  /** Signals the whole process group (needs `detached`), as a terminal's Ctrl-C does; no-op once gone. */
  signalGroup(signal: NodeJS.Signals): void;
  /** Kills the process by its PID if it still runs (a failed test), then closes the pipes. */
  dispose(): Promise<void>;
}

/**
 * Spawns `node <args>` (or `command <args>`) with stdout and stderr on two controlled pipes (stdin
 * closed); `extraFds` become the child's fds 3, 4, ….
 */
export function spawnWithPipes(
  args: string[],
  env: Record<string, string>,
  opts: {
    command?: string;
    detached?: boolean;
    cwd?: string;
    extraFds?: number[];
    out?: PipeState;
    err?: PipeState;
    /** Keep the test's copy of the write ends until dispose, for `clearNonBlocking`. */
    holdWriteEnds?: boolean;
    /** stderr goes into the stdout pipe too, so `out` holds both in the order written (`err` stays empty). */
    errToOut?: boolean;
  } = {},
): PipedProcess {
  const out = controlledPipe();
  const err = controlledPipe();
  for (const [pipe, state] of [
    [out, opts.out],
    [err, opts.err],
  ] as const) {
    if (state === 'full') pipe.fill();
    if (state === 'gone') pipe.closeReader();
  }
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  // Not a test process itself.
  delete childEnv.NODE_TEST_CONTEXT;
  const child = spawn(opts.command ?? process.execPath, args, {
    env: childEnv,
    stdio: ['ignore', out.writeFd, opts.errToOut ? out.writeFd : err.writeFd, ...(opts.extraFds ?? [])],
    detached: opts.detached ?? false,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  if (!opts.holdWriteEnds) {
    out.afterSpawn();
    err.afterSpawn();
  }
  const exited = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    out,
    err,
    exited,
    async exitWithin(ms) {
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        exited,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), ms);
        }),
      ]);
      clearTimeout(timer);
      return r;
    },
    async waitReady(url, timeoutMs = 60_000) {
      await waitFor(
        `${url} ready`,
        async () => {
          if (!running()) throw new Error(`exited early: ${err.text().replace(/x+/g, '').slice(-500)}`);
          return (await fetch(`${url}/readyz`)).status === 200;
        },
        timeoutMs,
        100,
      );
    },
    signalGroup(signal) {
      if (!running()) return;
      try {
        process.kill(-child.pid!, signal);
      } catch {
        // The group is gone already.
      }
    },
    async dispose() {
      if (running()) {
        child.kill('SIGKILL');
        await exited;
      }
      out.dispose();
      err.dispose();
    },
  };
}
