import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { needTool, REPO } from '../deploy/tools.ts';
import { tempDir } from '../helpers/nats-roles.ts';
import { makeCa, type TestCa } from './test-ca.ts';
import { startTlsPostgres, type TlsPostgres, tlsPostgresUnavailable } from './tls-postgres.ts';

/**
 * A pod reaches PostgreSQL over TLS and checks whom it talks to: the manifests give intake
 * `sslmode=verify-full&sslrootcert=<the operator's CA>` (deploy/k8s/base). Here a real PostgreSQL 15
 * that accepts TLS only, with certificates from a test CA, and the real `intake` CLI: verify-full
 * connects and doctor says so; a certificate for another host name, or from another CA, is refused;
 * a CA file that is not there is a configuration error, not a failure at the first query.
 */

const unavailable = tlsPostgresUnavailable();
/** A missing tool or privilege skips with a reason, except under CI=true, where `before` fails instead. */
function skipReason(): string | undefined {
  const tool = needTool('openssl', ['version']);
  if (tool || !unavailable || process.env.CI === 'true') return tool;
  console.log(`# skipping: ${unavailable}`);
  return unavailable;
}
const skip = skipReason();

interface Doctor {
  ok: boolean;
  checks: Array<{ name: string; status: string; detail: string }>;
}

describe('PostgreSQL over TLS with sslmode=verify-full', { skip }, () => {
  let dir: ReturnType<typeof tempDir>;
  let ca: TestCa;
  let server: TlsPostgres;
  let url: (db: string, params?: string) => string;

  /** Runs the real CLI (bin/intake.js) to its end: exit code, stdout, stderr. */
  const intake = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number; out: string; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(REPO, 'bin/intake.js'), ...args],
        {
          env: {
            ...process.env,
            LOG_LEVEL: 'info',
            NATS_URL: '',
            INTAKE_DATA_DIR: join(dir.path, 'intake'),
            ...env,
          },
          timeout: 60_000,
        },
        (err, stdout, stderr) =>
          resolve({
            code: err ? Number((err as { code?: number }).code ?? 1) : 0,
            out: stdout + stderr,
            stdout,
          }),
      );
    });

  const doctorJson = async (databaseUrl: string): Promise<Doctor> => {
    const r = await intake(['doctor', '--json'], { DATABASE_URL: databaseUrl });
    return JSON.parse(r.stdout) as Doctor;
  };

  before(async () => {
    if (unavailable) throw new Error(`${unavailable}: CI must provide it`);
    dir = tempDir('pg-tls');
    ca = makeCa(dir.path, 'pg');
    const leaf = ca.issue('localhost', { sans: ['DNS:localhost'] });
    server = await startTlsPostgres(leaf.cert, leaf.key);
    url = (db, params = `sslmode=verify-full&sslrootcert=${ca.cert}`) =>
      `postgres://postgres@localhost:${server.port}/${db}?${params}`;
    const admin = new pg.Client({ connectionString: url('postgres') });
    await admin.connect();
    await admin.query('CREATE DATABASE intake');
    await admin.end();
  });

  after(async () => {
    await server?.stop();
    dir?.remove();
  });

  test('the server takes TLS only (pg_hba), so the checks below are about the client', async () => {
    const plain = new pg.Client({ connectionString: url('postgres', 'sslmode=disable') });
    await assert.rejects(plain.connect(), /no pg_hba.conf entry|rejects connection/);
  });

  test('intake migrate and doctor connect with verify-full; doctor says the link is TLS-verified', async () => {
    const migrate = await intake(['migrate'], { DATABASE_URL: url('intake') });
    assert.equal(migrate.code, 0, migrate.out);
    const doctor = await doctorJson(url('intake'));
    const db = doctor.checks.find((c) => c.name === 'database')!;
    assert.equal(db.status, 'ok', db.detail);
    const tls = doctor.checks.find((c) => c.name === 'database tls')!;
    assert.equal(tls.status, 'ok', tls.detail);
    assert.match(tls.detail, /^TLS \(TLSv1\.[23]\), server certificate and host name verified against /);
  });

  test('doctor warns when the link is TLS but the server is not verified', async () => {
    const doctor = await doctorJson(url('intake', 'sslmode=no-verify'));
    const tls = doctor.checks.find((c) => c.name === 'database tls')!;
    assert.equal(tls.status, 'warn');
    assert.match(tls.detail, /the server is not verified; set sslmode=verify-full/);
  });

  test('a certificate for another host name is refused', async (t) => {
    const wrong = ca.issue('wrong-host', { sans: ['DNS:db.example.test'] });
    await server.useCertificate(wrong.cert, wrong.key);
    t.after(async () => {
      const right = ca.issue('localhost-again', { sans: ['DNS:localhost'] });
      await server.useCertificate(right.cert, right.key);
    });
    const doctor = await doctorJson(url('intake'));
    const db = doctor.checks.find((c) => c.name === 'database')!;
    assert.equal(db.status, 'fail');
    assert.match(db.detail, /Hostname\/IP does not match certificate's altnames/);
    const migrate = await intake(['migrate'], { DATABASE_URL: url('intake') });
    assert.notEqual(migrate.code, 0);
    assert.match(migrate.out, /does not match certificate's altnames/);
  });

  test('a certificate from another CA is refused', async (t) => {
    const other = makeCa(dir.path, 'other').issue('localhost', { sans: ['DNS:localhost'] });
    await server.useCertificate(other.cert, other.key);
    t.after(async () => {
      const right = ca.issue('localhost-third', { sans: ['DNS:localhost'] });
      await server.useCertificate(right.cert, right.key);
    });
    const db = (await doctorJson(url('intake'))).checks.find((c) => c.name === 'database')!;
    assert.equal(db.status, 'fail');
    assert.match(db.detail, /self.signed|unable to verify|issuer/i);
  });

  test('an sslrootcert that is not there is a configuration error naming it', async () => {
    const missing = join(dir.path, 'not-mounted', 'ca.crt');
    const r = await intake(['migrate'], {
      DATABASE_URL: url('intake', `sslmode=verify-full&sslrootcert=${missing}`),
    });
    assert.equal(r.code, 78, r.out);
    assert.match(r.out, new RegExp(`DATABASE_URL sslrootcert=${missing} cannot be read`));
  });
});
