// Runs pod watcher replicas as real child processes against a FakeApiServer, and reads what they say:
// their JSON log lines on stdout and their /metrics. Everything started here is registered with
// `t.after`, so it is killed (by the PID spawned) and closed even when the test fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { waitFor } from '../../harness/db.ts';
import { FakeApiServer, type FakeApiServerOptions, kubeconfigFor } from './fake-apiserver.ts';

const repoRoot = new URL('../../', import.meta.url).pathname;

/**
 * Lease timings for tests: short, but with room for a 2-core machine under load (a leader must not miss
 * its renew deadline because the box is busy starting its siblings).
 */
export const TEST_TIMINGS = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 250 };

// The shared poller: every check here returns a boolean, a replica or a bound port, never 0 or ''.
export { waitFor };

/** One parsed log line. */
export type LogLine = Record<string, unknown> & { msg?: string; event?: string };

/** A pod watcher child process. */
export class Replica {
  readonly logs: LogLine[] = [];
  stderr = '';
  exitCode: number | null | undefined;
  exitSignal: NodeJS.Signals | null | undefined;
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    child: ChildProcess,
  ) {
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ msg: `(not JSON) ${line}` });
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Sends a signal to this replica's PID. */
  signal(sig: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, sig);
  }

  /** The metrics port, once the replica has logged that it listens. */
  async metricsPort(): Promise<number> {
    return waitFor(`${this.name} to listen`, () => {
      const line = this.logs.find((l) => l.msg === 'metrics server listening');
      return typeof line?.port === 'number' ? line.port : undefined;
    });
  }

  /** Fetches and parses /metrics. */
  async metrics(): Promise<Metric[]> {
    const res = await fetch(`http://127.0.0.1:${await this.metricsPort()}/metrics`, {
      signal: AbortSignal.timeout(5000),
    });
    return parseMetrics(await res.text());
  }

  /** GET a path on the metrics server; returns the status code. */
  async httpStatus(path: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${await this.metricsPort()}${path}`, {
      signal: AbortSignal.timeout(5000),
    });
    await res.arrayBuffer();
    return res.status;
  }

  /** Value of one sample (0 if absent, as for a counter never incremented). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sampleValue(await this.metrics(), name, labels);
  }

  /** The pods this replica logged as new, as `namespace/name`. */
  loggedPods(): string[] {
    return this.logs.filter((l) => l.event === 'pod_created').map((l) => `${l.namespace}/${l.pod}`);
  }

  hasLogged(msg: string): boolean {
    return this.logs.some((l) => l.msg === msg);
  }

  /** Last lines of output, for failure messages. */
  tail(n = 15): string {
    const out = this.logs.slice(-n).map((l) => JSON.stringify(l));
    return `--- ${this.name} (pid ${this.pid}, exit ${this.exitCode ?? this.exitSignal ?? 'running'})\n${out.join('\n')}\n${this.stderr.slice(-2000)}`;
  }

  /** Kills for good: SIGCONT first in case it is stopped, then SIGKILL; waits for the exit. */
  async kill(): Promise<void> {
    if (!this.running) return;
    try {
      process.kill(this.pid, 'SIGCONT');
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await this.exited;
  }
}

/** One sample from a Prometheus text exposition. */
export interface Metric {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Metric[] {
  const out: Metric[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

export function sampleValue(metrics: Metric[], name: string, labels: Record<string, string> = {}): number {
  const hit = metrics.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return hit?.value ?? 0;
}

/** A fake API server and the replicas pointed at it. */
export interface Cluster {
  fake: FakeApiServer;
  replicas: Replica[];
  /** Starts one more replica (named like the others: r0, r1, ...). */
  spawn(env?: Record<string, string>): Replica;
  /** The replicas that are still running. */
  alive(): Replica[];
  /** The holder recorded in the Lease ('' if released or missing). */
  holder(): string;
  /** Waits until the Lease names a running replica that reports is_leader 1; returns it. */
  leader(timeoutMs?: number, exclude?: Replica): Promise<Replica>;
  /** Every pod logged by any replica, as `namespace/name`, in log order per replica. */
  loggedPods(): string[];
  /** Diagnostics for assertion messages. */
  dump(): string;
}

/** Starts a fake API server and `count` replicas, all torn down after the test. */
export async function startCluster(
  t: TestContext,
  count: number,
  opts: {
    fake?: FakeApiServerOptions;
    env?: Record<string, string>;
    /** Runs before any replica starts, e.g. to create pre-existing pods. */
    setup?: (fake: FakeApiServer) => void;
  } = {},
): Promise<Cluster> {
  const fake = await FakeApiServer.start(opts.fake);
  const dir = mkdtempSync(join(tmpdir(), 'pod-watcher-test-'));
  const replicas: Replica[] = [];

  t.after(async () => {
    await Promise.all(replicas.map((r) => r.kill()));
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });
  opts.setup?.(fake);

  const spawnReplica = (env: Record<string, string> = {}): Replica => {
    const name = `r${replicas.length}`;
    const kubeconfig = join(dir, `${name}.kubeconfig`);
    // Each replica authenticates with its own token, so the fake can partition one of them.
    writeFileSync(kubeconfig, kubeconfigFor(fake.url, name));
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      KUBECONFIG: kubeconfig,
      POD_NAME: name,
      NAMESPACE: 'default',
      LEASE_NAME: 'pod-watcher',
      LEASE_DURATION_MS: String(TEST_TIMINGS.leaseDurationMs),
      RENEW_DEADLINE_MS: String(TEST_TIMINGS.renewDeadlineMs),
      RETRY_PERIOD_MS: String(TEST_TIMINGS.retryPeriodMs),
      METRICS_PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      ...opts.env,
      ...env,
    };
    // Not a test process, and not in a cluster even if the tests are.
    delete childEnv.NODE_TEST_CONTEXT;
    delete childEnv.KUBERNETES_SERVICE_HOST;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/pod-watcher/main.ts'], {
      cwd: repoRoot,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const replica = new Replica(name, child);
    replicas.push(replica);
    return replica;
  };

  for (let i = 0; i < count; i++) spawnReplica();

  const cluster: Cluster = {
    fake,
    replicas,
    spawn: spawnReplica,
    alive: () => replicas.filter((r) => r.running),
    holder: () => String(fake.lease('default', 'pod-watcher')?.spec?.holderIdentity ?? ''),
    async leader(timeoutMs = 15_000, exclude?: Replica) {
      return waitFor(
        'a leader',
        async () => {
          const holder = cluster.holder();
          const r = replicas.find((x) => x.name === holder && x.running && x !== exclude);
          if (!r) return undefined;
          return (await r.metric('pod_watcher_is_leader')) === 1 ? r : undefined;
        },
        timeoutMs,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${cluster.dump()}`);
      });
    },
    loggedPods: () => replicas.flatMap((r) => r.loggedPods()),
    dump: () =>
      `lease: ${JSON.stringify(fake.lease('default', 'pod-watcher')?.spec)}\n${replicas.map((r) => r.tail()).join('\n')}`,
  };
  // Every replica up and ready (the elector has talked to the API server) before the test goes on.
  await Promise.all(
    replicas.map((r) =>
      waitFor(`${r.name} ready`, async () => (await r.httpStatus('/readyz')) === 200, 30_000),
    ),
  );
  return cluster;
}
