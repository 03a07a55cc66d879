import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { waitFor } from './db.ts';

const BIN = fileURLToPath(new URL('../bin/intake.js', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A real `intake` process (node bin/intake.js <command>) with its JSON log lines captured. */
export interface IntakeProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  /** Non-JSON output (stderr, warnings). */
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal to this process only (by PID). */
  kill(signal?: NodeJS.Signals): void;
  /** Sends a signal to the whole process group (needs `detached: true`), like Ctrl-C in a terminal. */
  killGroup(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when exited. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

export async function startIntakeProcess(
  command: string,
  env: Record<string, string>,
  opts: {
    waitReady?: boolean;
    timeoutMs?: number;
    port?: number;
    detached?: boolean;
    /** Run as this OS user (the test runs as root); supplementary groups are dropped. */
    user?: { uid: number; gid: number };
    /** Another copy of bin/intake.js and of the node binary (default: this checkout's, this node). */
    bin?: string;
    node?: string;
  } = {},
): Promise<IntakeProcess> {
  const port = opts.port ?? (await freePort());
  const child = spawn(opts.node ?? process.execPath, [opts.bin ?? BIN, command], {
    ...opts.user,
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a test can signal the group as a terminal's Ctrl-C does.
    detached: opts.detached ?? false,
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf('\n');
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        stderr.push(line);
      }
      i = buf.indexOf('\n');
    }
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let done = false;
  exited.then(() => {
    done = true;
  });
  const url = `http://127.0.0.1:${port}`;
  const p: IntakeProcess = {
    child,
    url,
    port,
    logs,
    stderr,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (!done && child.pid) process.kill(child.pid, signal);
    },
    killGroup: (signal) => {
      if (!done && child.pid) process.kill(-child.pid, signal);
    },
    async stop(graceMs = 20_000) {
      if (done) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  if (opts.waitReady !== false) {
    const ready = waitFor(
      `${command} to become ready`,
      async () => done || (await fetch(`${url}/readyz`)).status === 200,
      opts.timeoutMs ?? 30_000,
      100,
    );
    const died = exited.then(({ code, signal }) => {
      throw new Error(
        `intake ${command} exited early (code ${code}, signal ${signal}): ${stderr.join('').slice(-1000)}`,
      );
    });
    try {
      await Promise.race([ready, died]);
    } catch (err) {
      await p.stop(1000);
      throw err;
    }
    died.catch(() => {}); // exiting later is the test's business
  }
  return p;
}
