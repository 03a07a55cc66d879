import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './db.ts';
import { freePort } from './intake-process.ts';

/**
 * Real `nats-server` processes for tests: one server, or a 3-node JetStream cluster, on free loopback
 * ports with temporary store directories. Every process is stopped by its own PID (never by name) and
 * its directory removed by `stop()`; call it from `t.after` so a failing test cleans up too.
 */
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export interface NatsNode {
  name: string;
  port: number;
  url: string;
  /** The node's process while it runs. */
  child: ChildProcess | undefined;
  /** Starts the node again on the same ports and store directory (after `kill`). */
  start(): Promise<void>;
  /** Sends a signal and waits for the process to exit (SIGKILL by default: a crash). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal without waiting for anything, e.g. SIGSTOP to freeze the server and SIGCONT. */
  signal(signal: NodeJS.Signals): void;
}

export interface NatsServer {
  /** Comma-separated client URLs, as NATS_URL takes them. */
  url: string;
  nodes: NatsNode[];
  /** Stops every node and removes the store directories. Safe to call twice. */
  stop(): Promise<void>;
}

/** Names unique per test file, for NATS_STREAM / NATS_SUBJECT / NATS_CONSUMER. */
export function uniqueStream(label: string): { stream: string; subject: string; consumer: string } {
  const id = `${label.replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`;
  return { stream: `T_${id}`.toUpperCase(), subject: `t.${id}.messages`, consumer: `writer_${id}` };
}

/** Environment for an intake process using this server and stream. */
export function natsEnv(server: NatsServer, names: ReturnType<typeof uniqueStream>): Record<string, string> {
  return {
    NATS_URL: server.url,
    NATS_STREAM: names.stream,
    NATS_SUBJECT: names.subject,
    NATS_CONSUMER: names.consumer,
  };
}

/** Options of a test server beyond command-line flags. */
export interface NatsServerOptions {
  /**
   * Text of a nats-server configuration file (e.g. `jetstream { max_file_store: 64KB }`), loaded with
   * `-c`; the command-line flags (ports, store directory, name) still apply on top of it.
   */
  config?: string;
}

/** One JetStream server; `extraArgs` are passed to nats-server (e.g. `--user`, `--pass`). */
export async function startNatsServer(
  extraArgs: string[] = [],
  opts: NatsServerOptions = {},
): Promise<NatsServer> {
  return startNodes(1, extraArgs, opts);
}

/** Three JetStream nodes routed to each other on loopback (stream replicas 3 need all three). */
export async function startNatsCluster(opts: NatsServerOptions = {}): Promise<NatsServer> {
  return startNodes(3, [], opts);
}

async function startNodes(
  count: number,
  extraArgs: string[] = [],
  opts: NatsServerOptions = {},
): Promise<NatsServer> {
  const root = mkdtempSync(join(tmpdir(), 'intake-nats-'));
  const configArgs: string[] = [];
  if (opts.config !== undefined) {
    const file = join(root, 'nats.conf');
    writeFileSync(file, opts.config);
    configArgs.push('-c', file);
  }
  // One at a time and checked for repeats: a port is free again once freePort() closed it, so parallel
  // or repeated calls can hand out the same one.
  const taken = new Set<number>();
  const pick = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  const ports: Array<{ client: number; cluster: number; monitor: number }> = [];
  for (let i = 0; i < count; i++)
    ports.push({ client: await pick(), cluster: await pick(), monitor: await pick() });
  const clusterName = `c_${randomBytes(3).toString('hex')}`;
  const nodes: NatsNode[] = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const args = [...configArgs, '-a', '127.0.0.1', '-p', String(p.client), '-m', String(p.monitor), '-js'];
    args.push('-sd', join(root, name), '-n', `${clusterName}_${name}`, ...extraArgs);
    if (count > 1) {
      const routes = ports
        .filter((_, j) => j !== i)
        .map((o) => `nats://127.0.0.1:${o.cluster}`)
        .join(',');
      args.push('--cluster', `nats://127.0.0.1:${p.cluster}`, '--routes', routes);
      args.push('--cluster_name', clusterName);
    }
    const node: NatsNode = {
      name,
      port: p.client,
      url: `nats://127.0.0.1:${p.client}`,
      child: undefined,
      async start() {
        if (node.child) return;
        const child = spawn(NATS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr!.on('data', (d: Buffer) => {
          err = (err + d.toString()).slice(-2000);
        });
        node.child = child;
        child.on('exit', () => {
          if (node.child === child) node.child = undefined;
        });
        await waitFor(
          `nats-server ${name} on port ${p.client} to be healthy`,
          async () => {
            if (!node.child) throw new Error(`nats-server exited: ${err}`);
            const r = await fetch(`http://127.0.0.1:${p.monitor}/healthz`);
            return r.status === 200;
          },
          20_000,
          50,
        );
      },
      async kill(signal = 'SIGKILL') {
        const child = node.child;
        if (!child?.pid) return;
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        try {
          process.kill(child.pid, signal);
        } catch {
          return; // already gone
        }
        await exited;
      },
      signal(signal) {
        const pid = node.child?.pid;
        if (pid === undefined) throw new Error(`nats-server ${name} is not running`);
        process.kill(pid, signal);
      },
    };
    return node;
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // SIGKILL ends a process stopped with SIGSTOP too.
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')));
    rmSync(root, { recursive: true, force: true });
  };
  try {
    // Cluster nodes only turn healthy once their routes form, so start them together.
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: nodes.map((n) => n.url).join(','), nodes, stop };
}
