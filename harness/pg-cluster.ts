import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync,
  chownSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { waitFor } from './db.ts';
import { freePort } from './intake-process.ts';

/**
 * A real PostgreSQL cluster for fault tests, shaped like the CloudNativePG Cluster in
 * deploy/k8s/base/postgres/cluster.yaml: one primary and streaming standbys, quorum synchronous
 * replication (`synchronous_standby_names = 'ANY 1 (pg1, pg2, …)'`, every instance named, as the
 * operator writes it with `dataDurability: required`), `synchronous_commit = on`, and a TCP proxy that
 * plays the `-rw` Service: it forwards to the primary, and on a switch drops every connection it
 * carries and sends new ones to the new primary.
 *
 * Debian's binaries (initdb, pg_basebackup, postgres), run as the `postgres` OS user through setpriv
 * when the test runs as root (PostgreSQL refuses to run as root), on free loopback ports with data
 * in one temporary directory. Every postmaster is this process's child and is stopped by its PID;
 * `stop()` (call it from `after`/`finally`) stops them all and removes the directory, and a process
 * exit stops any that are left.
 */

const run = promisify(execFile);

/** The directory of the PostgreSQL server binaries, or undefined if none is installed. */
export function pgBinDir(): string | undefined {
  const fromEnv = process.env.PG_BIN_DIR;
  if (fromEnv) return existsSync(join(fromEnv, 'pg_basebackup')) ? fromEnv : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions)
    if (existsSync(join(root, v, 'bin', 'pg_basebackup'))) return join(root, v, 'bin');
  return undefined;
}

/** One PostgreSQL instance of the cluster. */
export interface PgInstance {
  /** Its name, also its `cluster_name` and so the application_name it streams under. */
  name: string;
  port: number;
  dataDir: string;
  /** The postmaster's PID while it runs. */
  pid: number | undefined;
  /** A connection string to this instance directly (not through the proxy). */
  url(database?: string): string;
  /** Starts the postmaster on its port and data directory and waits until it answers. */
  start(): Promise<void>;
  /**
   * Stops the postmaster by its PID and waits for it to exit: `immediate` (SIGQUIT) is a crash, no
   * checkpoint, as `pg_ctl stop -m immediate`; `fast` (SIGINT) a clean shutdown.
   */
  stop(mode: 'immediate' | 'fast'): Promise<void>;
  /** The end of the WAL it has received (standby) or written (primary), as a number of bytes. */
  walPosition(): Promise<bigint>;
}

/**
 * A TCP proxy to one instance: the `-rw` Service in front of the primary, and each standby's network
 * link to the primary it streams from.
 */
export interface TcpProxy {
  port: number;
  /** The instance connections go to now (undefined: none, every connection is closed at once). */
  target: PgInstance | undefined;
  /** Drops every connection it carries; new connections go to `target`. */
  switchTo(target: PgInstance | undefined): void;
  /** Stops forwarding what the target sends (it queues up, then the target's writes block). */
  hold(): void;
  close(): Promise<void>;
}

export interface PgCluster {
  instances: PgInstance[];
  /** The instance that is primary now. */
  primary: PgInstance;
  /** The `-rw` Service. */
  proxy: TcpProxy;
  /** A connection string through the proxy (what intake's DATABASE_URL is). */
  url(database?: string): string;
  /** Waits until the primary has a streaming synchronous (quorum) standby. */
  waitForSyncStandby(timeoutMs?: number): Promise<void>;
  /**
   * A failover as CloudNativePG does it: the primary crashes (immediate stop), the most advanced
   * standby (received WAL) is promoted, the proxy switches to it, the other standbys follow it.
   * Resolves with the promoted instance and the time each step took.
   */
  failover(opts?: FailoverOptions): Promise<FailoverReport>;
  /** Stops every instance by PID and the proxy, removes the data. Safe to call twice. */
  stop(): Promise<void>;
}

export interface FailoverOptions {
  /**
   * Before the crash, hold the WAL on every replication link for this long (the links then break
   * with the primary), so the primary dies with commits that no standby has: what synchronous
   * replication exists for. Default 0.
   */
  stallReplicationMs?: number;
}

export interface FailoverReport {
  /** performance.now() when the primary was stopped. */
  crashedAt: number;
  crashed: string;
  promoted: string;
  /** From the crash to the proxy pointing at the promoted standby. */
  switchedAfterMs: number;
  /** From the crash to the new primary having a synchronous standby again (commits complete). */
  syncAfterMs: number;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort when a test process exits without stopping its cluster: no postmaster outlives it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) if (child.pid) process.kill(child.pid, 'SIGQUIT');
  });
}

interface OsUser {
  uid: number;
  gid: number;
}

/** The `postgres` OS user when this process runs as root (PostgreSQL will not run as root). */
function runAs(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function command(user: OsUser | undefined, bin: string, args: string[]): [string, string[]] {
  if (!user) return [bin, args];
  return ['setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', bin, ...args]];
}

/** Options of a test cluster. */
export interface PgClusterOptions {
  /** Instances including the primary (default 3, as the production Cluster; at least 2). */
  instances?: number;
  /** Extra postgresql.conf lines for every instance. */
  settings?: Record<string, string>;
}

export async function startPgCluster(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = pgBinDir();
  if (!bin) throw new Error('PostgreSQL server binaries (pg_basebackup) not found; set PG_BIN_DIR');
  const count = opts.instances ?? 3;
  if (count < 2) throw new Error('a cluster needs a primary and at least one standby');
  installExitHook();
  const user = runAs();
  const root = mkdtempSync(join(tmpdir(), 'intake-pgcluster-'));
  if (user) chownSync(root, user.uid, user.gid);
  const exec = async (tool: string, args: string[]) => {
    const [cmd, argv] = command(user, join(bin, tool), args);
    await run(cmd, argv, { cwd: root });
  };
  const names = Array.from({ length: count }, (_, i) => `pg${i + 1}`);
  const taken = new Set<number>();
  const pick = async () => {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  const instances: PgInstance[] = [];
  for (const name of names) instances.push(makeInstance(name, await pick(), root, bin, user));
  const proxy = await startTcpProxy();
  // Each standby streams through its own link, so a test can hold or cut its replication alone.
  const links = new Map<PgInstance, TcpProxy>();
  for (const standby of instances.slice(1)) links.set(standby, await startTcpProxy());
  const cluster: PgCluster = {
    instances,
    primary: instances[0]!,
    proxy,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${proxy.port}/${database}`,
    waitForSyncStandby: (timeoutMs = 30_000) => waitForSync(cluster.primary, timeoutMs),
    failover: (fo) => failover(cluster, links, fo),
    stop: async () => {
      await proxy.close();
      await Promise.all([...links.values()].map((l) => l.close()));
      await Promise.all(instances.map((i) => i.stop('immediate')));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    const primary = instances[0]!;
    await exec('initdb', ['-D', primary.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync']);
    const conf = {
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${root}'`,
      wal_level: 'replica',
      max_wal_senders: '10',
      wal_keep_size: "'512MB'",
      hot_standby: 'on',
      synchronous_commit: 'on',
      synchronous_standby_names: `'ANY 1 (${names.join(', ')})'`,
      shared_buffers: "'32MB'",
      max_connections: '200',
      log_min_messages: 'warning',
      // A standby whose link broke retries this soon (default 5 s).
      wal_retrieve_retry_interval: "'200ms'",
      ...opts.settings,
    };
    appendConf(primary.dataDir, conf, user);
    await primary.start();
    proxy.switchTo(primary);
    for (const standby of instances.slice(1)) {
      const link = links.get(standby)!;
      link.switchTo(primary);
      // -R writes primary_conninfo: the standby streams through its link from now on.
      await exec('pg_basebackup', [
        ...['-D', standby.dataDir, '-h', '127.0.0.1', '-p', String(link.port), '-U', 'postgres'],
        ...['-X', 'stream', '-R', '-c', 'fast', '--no-sync'],
      ]);
      await standby.start();
    }
    await cluster.waitForSyncStandby();
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** Appends settings to postgresql.conf as the data directory's owner would. */
function appendConf(dataDir: string, conf: Record<string, string>, user: OsUser | undefined): void {
  const lines = Object.entries(conf).map(([k, v]) => `${k} = ${v}`);
  appendFileSync(join(dataDir, 'postgresql.conf'), `\n# intake test cluster\n${lines.join('\n')}\n`);
  if (user) chownSync(join(dataDir, 'postgresql.conf'), user.uid, user.gid);
}

function makeInstance(
  name: string,
  port: number,
  root: string,
  bin: string,
  user: OsUser | undefined,
): PgInstance {
  const dataDir = join(root, name);
  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  const inst: PgInstance = {
    name,
    port,
    dataDir,
    get pid() {
      return child?.pid;
    },
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async start() {
      if (child) return;
      const logFile = join(root, `${name}.log`);
      const fd = openSync(logFile, 'a');
      if (user) chownSync(logFile, user.uid, user.gid);
      // Per-instance settings on the command line: a standby's postgresql.conf is the primary's copy.
      const [cmd, argv] = command(user, join(bin, 'postgres'), [
        ...['-D', dataDir, '-c', `port=${port}`, '-c', `cluster_name=${name}`],
      ]);
      const c = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      child = c;
      live.add(c);
      exited = new Promise((resolve) =>
        c.once('exit', () => {
          live.delete(c);
          if (child === c) child = undefined;
          resolve();
        }),
      );
      await waitFor(
        `PostgreSQL ${name} on port ${port} to answer`,
        async () => {
          if (child !== c) throw new Error(`${name} exited: ${tail(logFile)}`);
          await query(inst.url(), 'SELECT 1');
          return true;
        },
        30_000,
        100,
      );
    },
    async stop(mode) {
      const c = child;
      if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
      try {
        process.kill(c.pid, mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
      } catch {
        return; // already gone
      }
      await exited;
    },
    async walPosition() {
      const r = await query<{ lsn: string }>(
        inst.url(),
        `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END
                 - '0/0'::pg_lsn)::text AS lsn`,
      );
      return BigInt(r[0]!.lsn.split('.')[0]!);
    },
  };
  return inst;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-1500);
  } catch {
    return '';
  }
}

/** One statement on a fresh connection (the instance may have just started or be about to stop). */
export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

async function waitForSync(primary: PgInstance, timeoutMs: number): Promise<void> {
  await waitFor(
    `a synchronous standby streaming from ${primary.name}`,
    async () => {
      const r = await query<{ n: number }>(
        primary.url(),
        `SELECT count(*)::int AS n FROM pg_stat_replication
         WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')`,
      );
      return r[0]!.n > 0;
    },
    timeoutMs,
    100,
  );
}

async function failover(
  cluster: PgCluster,
  links: Map<PgInstance, TcpProxy>,
  opts: FailoverOptions = {},
): Promise<FailoverReport> {
  const old = cluster.primary;
  const standbys = cluster.instances.filter((i) => i !== old && i.pid !== undefined);
  if (standbys.length === 0) throw new Error('no standby to promote');
  const linkOf = (s: PgInstance) => {
    const link = links.get(s);
    if (!link) throw new Error(`${s.name} has no replication link (it was the first primary)`);
    return link;
  };
  if (opts.stallReplicationMs) {
    for (const s of standbys) linkOf(s).hold();
    await new Promise((r) => setTimeout(r, opts.stallReplicationMs));
  }
  const started = performance.now();
  await old.stop('immediate');
  // What the links still held dies with the primary.
  for (const s of standbys) linkOf(s).switchTo(undefined);
  // The most advanced standby: with ANY 1 each commit is on at least one standby, not on every one.
  const positions = await Promise.all(standbys.map(async (s) => ({ s, lsn: await s.walPosition() })));
  positions.sort((a, b) => (a.lsn === b.lsn ? 0 : a.lsn > b.lsn ? -1 : 1));
  const promoted = positions[0]!.s;
  await query(promoted.url(), 'SELECT pg_promote(true, 30)');
  cluster.primary = promoted;
  cluster.proxy.switchTo(promoted);
  const switchedAfterMs = performance.now() - started;
  // The others follow the new primary on its new timeline (recovery_target_timeline = latest).
  for (const s of standbys) if (s !== promoted) linkOf(s).switchTo(promoted);
  if (standbys.length > 1) await waitForSync(promoted, 60_000);
  return {
    crashedAt: started,
    crashed: old.name,
    promoted: promoted.name,
    switchedAfterMs: Math.round(switchedAfterMs),
    syncAfterMs: Math.round(performance.now() - started),
  };
}

/**
 * Written here rather than taken from a library: a plain TCP pipe whose jobs beyond piping (drop
 * everything on a switch, as kube-proxy does when the endpoints change and the old pod is gone; hold
 * what the target sends, as a stalled network does) no generic proxy offers.
 */
async function startTcpProxy(): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    const target = proxy.target;
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: TcpProxy = {
    port: (server.address() as { port: number }).port,
    target: undefined,
    switchTo(target) {
      proxy.target = target;
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    hold() {
      for (const [client, upstream] of pairs) {
        upstream.unpipe(client);
        upstream.pause();
      }
    },
    close: async () => {
      proxy.switchTo(undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
