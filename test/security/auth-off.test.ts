import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { tempDir } from '../helpers/nats-roles.ts';

/**
 * Authentication off (no API keys) as someone else on the network would find it: real `intake api`
 * processes, reached on a non-loopback address of this machine (eth0's, or one added to `lo` for the
 * test). With no keys intake listens on loopback only unless the operator opted in, the start-up
 * log names the address really bound, and a misspelt NODE_ENV never runs as development.
 */
let tdb: TestDatabase;
let remote: string | undefined;
let added: string | undefined;
const dir = tempDir('auth-off');
const procs: IntakeProcess[] = [];

/**
 * A non-loopback IPv4 address of this machine; else one of 198.18.0.0/15 (RFC 2544) added to `lo` for the test
 * (root; this kernel has no dummy interfaces), which is not a loopback address all the same.
 */
function nonLoopbackAddress(): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  const address = `198.18.${randomBytes(1)[0]}.${1 + (randomBytes(1)[0]! % 250)}`;
  try {
    execFileSync('ip', ['addr', 'add', `${address}/32`, 'dev', 'lo'], { stdio: 'pipe' });
    added = address;
    return address;
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    console.log(
      `# no non-loopback address, and none could be added (${(err as Error).message.split('\n')[0]})`,
    );
    return undefined;
  }
}

before(async () => {
  remote = nonLoopbackAddress();
  tdb = await createTestDatabase('auth_off');
});
after(async () => {
  for (const p of procs) await p.stop(5000);
  await tdb?.drop();
  dir.remove();
  if (added) execFileSync('ip', ['addr', 'del', `${added}/32`, 'dev', 'lo'], { stdio: 'pipe' });
});

/** `intake api` with no HOST unless given (the harness sets 127.0.0.1 otherwise). */
async function api(env: Record<string, string>, opts: { waitReady?: boolean } = {}) {
  const p = await startIntakeProcess(
    'api',
    { DATABASE_URL: tdb.url, INTAKE_DATA_DIR: dir.path, HOST: '', ...env },
    { timeoutMs: 60_000, ...opts },
  );
  procs.push(p);
  return p;
}

const reaches = async (host: string, port: number) => {
  try {
    return (await fetch(`http://${host}:${port}/livez`, { signal: AbortSignal.timeout(3000) })).ok;
  } catch {
    return false;
  }
};
/** The exit code, or a failure if the process is still running after 30 s (it started instead). */
const exitCode = async (p: IntakeProcess) => {
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error('still running after 30 s: it started')), 30_000).unref(),
  );
  return (await Promise.race([p.exited, timeout])).code;
};
const started = (p: IntakeProcess) => p.logs.find((l) => l.msg === 'intake started') as { url: string };

describe('authentication off listens on loopback only, unless the operator opts in', () => {
  test('no keys: reachable on 127.0.0.1, not on the machine’s other address; the log says 127.0.0.1', async (t) => {
    if (!remote) return t.skip('no non-loopback address to try');
    const p = await api({});
    assert.ok(await reaches('127.0.0.1', p.port));
    assert.equal(await reaches(remote, p.port), false, `reachable on ${remote}`);
    assert.equal(started(p).url, `http://127.0.0.1:${p.port}`);
    const warning = p.logs.find((l) => /AUTHENTICATION IS OFF/.test(String(l.msg)));
    assert.ok(warning, 'the loud warning');
    assert.match(String(warning.msg), new RegExp(`http://127\\.0\\.0\\.1:${p.port}.*loopback only`));
    await p.stop();
  });

  test('no keys and HOST=0.0.0.0: refused at start, naming the opt-in', async () => {
    const p = await api({ HOST: '0.0.0.0' }, { waitReady: false });
    assert.equal(await exitCode(p), 78);
    assert.match(
      p.stderr.join(''),
      /HOST=0\.0\.0\.0 with no INTAKE_API_KEYS.*INTAKE_ALLOW_NO_AUTH_REMOTE=true/,
    );
  });

  test('no keys, HOST=0.0.0.0 and INTAKE_ALLOW_NO_AUTH_REMOTE=true: everywhere, and the log says 0.0.0.0', async (t) => {
    if (!remote) return t.skip('no non-loopback address to try');
    const p = await api({ HOST: '0.0.0.0', INTAKE_ALLOW_NO_AUTH_REMOTE: 'true' });
    assert.ok(await reaches(remote, p.port));
    assert.equal(started(p).url, `http://0.0.0.0:${p.port}`);
    await p.stop();
  });

  test('with keys, the default is every interface, as a pod needs', async (t) => {
    if (!remote) return t.skip('no non-loopback address to try');
    const keys = JSON.stringify([generateKey('k', ['ingest']).entry]);
    const p = await api({ INTAKE_API_KEYS: keys });
    assert.ok(await reaches(remote, p.port));
    assert.equal(started(p).url, `http://0.0.0.0:${p.port}`);
    await p.stop();
  });

  test('NODE_ENV=Production is production (keys required); NODE_ENV=prod is refused', async () => {
    for (const [value, message] of [
      ['Production', /INTAKE_API_KEYS \(or INTAKE_API_KEYS_FILE\) is required when NODE_ENV=production/],
      [' PRODUCTION ', /INTAKE_API_KEYS \(or INTAKE_API_KEYS_FILE\) is required when NODE_ENV=production/],
      ['prod', /NODE_ENV="prod" is not valid: set production, development or test/],
    ] as const) {
      const p = await api({ NODE_ENV: value }, { waitReady: false });
      assert.equal(await exitCode(p), 78, `NODE_ENV=${value}`);
      assert.match(p.stderr.join(''), message);
      assert.ok(!p.logs.some((l) => l.msg === 'intake started'), `NODE_ENV=${value} started`);
    }
  });
});
