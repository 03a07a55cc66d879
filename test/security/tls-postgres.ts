import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';

/**
 * A PostgreSQL 15 cluster of the test's own (Debian's binaries, run as the `postgres` OS user) that
 * speaks TLS only: `ssl = on` with the given certificate, and pg_hba admits TLS connections from
 * loopback and rejects the others. Stopped by its postmaster's PID.
 */
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface TlsPostgres {
  port: number;
  /** Replaces the server's certificate and key and reloads the configuration (SIGHUP). */
  useCertificate(cert: string, key: string): Promise<void>;
  stop(): Promise<void>;
}

const asPostgres = (cmd: string, args: string[]) =>
  execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, cmd), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });

/** Whether this process can run the cluster: root (to act as `postgres`) and the binaries exist. */
export function tlsPostgresUnavailable(): string | undefined {
  if (userInfo().uid !== 0) return 'needs root to run PostgreSQL as the postgres user';
  try {
    execFileSync(join(PG_BIN, 'postgres'), ['--version'], { stdio: 'ignore' });
    execFileSync('id', ['postgres'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `no PostgreSQL binaries in ${PG_BIN} or no postgres user`;
  }
}

/** Starts the cluster in a directory of its own (owned by `postgres`), removed by `stop()`. */
export async function startTlsPostgres(cert: string, key: string): Promise<TlsPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'intake-tls-pg-'));
  const data = join(dir, 'data');
  mkdirSync(data, { recursive: true });
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  chownSync(dir, uid, gid);
  chownSync(data, uid, gid);
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  const place = (from: string, to: string) => {
    copyFileSync(from, join(data, to));
    chownSync(join(data, to), uid, gid);
    chmodSync(join(data, to), 0o600); // PostgreSQL refuses a key others can read
  };
  place(cert, 'server.crt');
  place(key, 'server.key');
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'ssl = on',
      "ssl_cert_file = 'server.crt'",
      "ssl_key_file = 'server.key'",
      'fsync = off',
    ].join('\n'),
  );
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      'hostssl all all 127.0.0.1/32 trust',
      'hostnossl all all 127.0.0.1/32 reject',
      'local all all trust',
    ].join('\n'),
  );
  asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', 'start']);
  const pid = () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const postmaster = pid();
  return {
    port,
    async useCertificate(newCert, newKey) {
      place(newCert, 'server.crt');
      place(newKey, 'server.key');
      process.kill(postmaster, 'SIGHUP');
      // The postmaster re-reads the files when it processes the signal; a new backend sees the result.
      await new Promise((r) => setTimeout(r, 500));
    },
    async stop() {
      try {
        process.kill(postmaster, 'SIGINT'); // fast shutdown
      } catch {
        rmSync(dir, { recursive: true, force: true });
        return;
      }
      await waitFor(
        'test PostgreSQL stopped',
        () => {
          try {
            process.kill(postmaster, 0);
            return false;
          } catch {
            return true;
          }
        },
        20_000,
        50,
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
