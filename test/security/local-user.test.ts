import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { stopLeftoverPostgres } from '../helpers/postmaster.ts';

/**
 * Another OS user on a machine running `npm start` (docs/security.md, "local user"): a real second user,
 * created with useradd when missing, who tries, as that user (setpriv), to reach the embedded PostgreSQL
 * of a running `intake start`, over TCP on its port and through its Unix socket, and to list the data
 * directory and read the development master key. Every attempt must be refused. intake runs as root (as
 * in CI, where PostgreSQL then runs as `postgres`) and, where the checkout is readable by other users,
 * as an unprivileged user of its own.
 */
const ATTACKER = 'intake-t-other';
const OWNER = 'intake-t-owner';
const BIN = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));

interface Probe {
  reached: boolean;
  /** First byte PostgreSQL answered the startup message with: R (authentication), E (error). */
  reply?: string;
  authOk?: boolean;
  code?: string;
}

/**
 * Speaks just enough of PostgreSQL's protocol (a StartupMessage as user postgres) to tell whether the
 * server would let us in, with nothing but node itself, so the other user needs no node_modules.
 */
const PROBE = `
const net = require('node:net');
const [kind, target, port] = process.argv.slice(1);
const s = net.connect(kind === 'tcp' ? { host: target, port: Number(port) } : { path: target });
const done = (r) => { console.log(JSON.stringify(r)); s.destroy(); };
s.setTimeout(5000, () => done({ reached: false, code: 'TIMEOUT' }));
s.on('error', (e) => done({ reached: false, code: e.code }));
s.on('connect', () => {
  const params = Buffer.from('user\\0postgres\\0database\\0postgres\\0\\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + params.length);
  head.writeInt32BE(196608, 4);
  s.write(Buffer.concat([head, params]));
});
s.once('data', (d) => done({ reached: true, reply: String.fromCharCode(d[0]),
  authOk: d[0] === 0x52 && d.length >= 9 && d.readInt32BE(5) === 0 }));
`;

function ensureUser(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    spawnSync('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      '--user-group',
      name,
    ]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * Runs a command as `user` with no supplementary groups, as another login would. Asynchronous: the
 * control listeners below live in this process and must answer meanwhile.
 */
function as(
  user: { uid: number; gid: number },
  cmd: string,
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      'setpriv',
      ['--reuid', String(user.uid), '--regid', String(user.gid), '--clear-groups', '--', cmd, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (err) => resolve({ status: null, stdout, stderr: String(err) }));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

let attacker: { uid: number; gid: number };
let node = process.execPath;
const cleanup: Array<() => unknown> = [];

async function probe(kind: 'tcp' | 'unix', target: string, port = 0): Promise<Probe> {
  const r = await as(attacker, node, ['-e', PROBE, kind, target, String(port)]);
  assert.equal(r.status, 0, `the probe ran as ${ATTACKER}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as Probe;
}

before(async () => {
  for (const tool of ['setpriv', 'useradd']) {
    if (spawnSync('which', [tool]).status !== 0) throw new Error(`${tool} is needed (util-linux, passwd)`);
  }
  assert.equal(process.getuid?.(), 0, 'this test makes OS users: run it as root (as CI does)');
  attacker = ensureUser(ATTACKER);
  // The probe must work as that user: it reaches a listener anyone may reach, over TCP and a socket.
  const open = mkdtempSync(join(tmpdir(), 'intake-open-'));
  chmodSync(open, 0o777);
  cleanup.push(() => rmSync(open, { recursive: true, force: true }));
  const listen = (arg: number | string) =>
    new Promise<Server>((resolve) => {
      const srv = createServer((c) => c.end('R\0\0\0\x08\0\0\0\0'));
      cleanup.push(() => srv.close());
      if (typeof arg === 'string') srv.listen(arg, () => resolve(srv));
      else srv.listen(arg, '127.0.0.1', () => resolve(srv));
    });
  const tcp = await listen(0);
  const sock = join(open, 'control.sock');
  await listen(sock);
  chmodSync(sock, 0o777);
  // The running node may live where the other user cannot go (a per-user toolchain): try the system's.
  for (const candidate of [process.execPath, '/usr/bin/node', '/usr/local/bin/node']) {
    node = candidate;
    if ((await as(attacker, node, ['-e', '0'])).status === 0) break;
  }
  const port = (tcp.address() as { port: number }).port;
  assert.equal((await probe('tcp', '127.0.0.1', port)).authOk, true, 'control: the probe reaches TCP');
  assert.equal((await probe('unix', sock)).authOk, true, 'control: the probe reaches a socket');
});
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** Everything the attacker tries against a running intake whose data directory is `dataDir`. */
async function attack(dataDir: string) {
  const pid = readFileSync(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n');
  const port = Number(pid[3]);
  const socketDir = pid[4]?.trim() || join(dataDir, 'pg');
  assert.ok(port > 0, 'the embedded PostgreSQL runs');
  const tcp = await probe('tcp', '127.0.0.1', port);
  assert.ok(
    !tcp.reached || !['R', 'E'].includes(tcp.reply!),
    `TCP 127.0.0.1:${port}: ${JSON.stringify(tcp)}`,
  );
  for (const dir of new Set([socketDir, join(dataDir, 'pg')])) {
    const sock = await probe('unix', join(dir, `.s.PGSQL.${port}`));
    assert.equal(sock.reached, false, `socket in ${dir}: ${JSON.stringify(sock)}`);
  }
  for (const [cmd, args] of [
    ['ls', [dataDir]],
    ['ls', [join(dataDir, 'pg')]],
    ['cat', [join(dataDir, 'pii-master.key')]],
    ['cat', [join(dataDir, 'pg', 'postmaster.pid')]],
  ] as const) {
    const r = await as(attacker, cmd, [...args]);
    assert.notEqual(r.status, 0, `${ATTACKER} ran ${cmd} ${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /Permission denied/, `${cmd} ${args.join(' ')}`);
  }
  assert.equal(statSync(dataDir).mode & 0o007, 0, 'nothing for others on the data directory');
  assert.equal(statSync(join(dataDir, 'pii-master.key')).mode & 0o077, 0, 'the key file is 0600');
}

async function startAs(
  dataDir: string,
  user?: { uid: number; gid: number },
  run: { bin?: string; node?: string } = {},
): Promise<IntakeProcess> {
  const p = await startIntakeProcess(
    'start',
    { INTAKE_DATA_DIR: dataDir, DATABASE_URL: '', NATS_URL: '', INTAKE_PII_MASTER_KEY: '' },
    { timeoutMs: 90_000, ...(user ? { user } : {}), ...run },
  );
  cleanup.push(() => p.stop(10_000));
  cleanup.push(() => stopLeftoverPostgres(dataDir));
  return p;
}

/**
 * This checkout's intake and node, as `owner` can run them. A checkout or a node under a private
 * directory (CI's clone, or Node 24 unpacked under a mktemp directory) is not readable by another user:
 * then the files intake needs are hard-linked (copied across file systems) into a directory everyone may
 * read, so the test runs wherever the suite does instead of being skipped.
 */
async function runnableBy(owner: { uid: number; gid: number }): Promise<{ bin?: string; node?: string }> {
  // Spawned as the harness spawns intake (uid and gid set by node itself), so the check fails where that would.
  const readable = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(BIN)})`], {
    uid: owner.uid,
    gid: owner.gid,
  });
  if (readable.status === 0) return {};
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'intake-public-'));
  chmodSync(dir, 0o755);
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const link = (from: string, to: string) => {
    const r = spawnSync('cp', ['-al', from, to]);
    if (r.status !== 0) execFileSync('cp', ['-a', from, to]);
  };
  for (const entry of ['bin', 'src', 'sql', 'package.json', 'node_modules', 'tsconfig.json'])
    link(join(root, entry), join(dir, entry));
  link(process.execPath, join(dir, 'node'));
  // cp -a keeps the modes, and a checkout made under a umask of 077 has private directories too.
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  return { bin: join(dir, 'bin', 'intake.js'), node: join(dir, 'node') };
}

describe('another local user gets nothing of a running `intake start`', () => {
  test('intake as root (PostgreSQL as postgres): no TCP, no socket, no data directory, no key', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'intake-local-'));
    chmodSync(parent, 0o755); // PostgreSQL's own user must reach the data directory below
    cleanup.push(() => rmSync(parent, { recursive: true, force: true }));
    const dataDir = join(parent, 'data');
    const p = await startAs(dataDir);
    assert.equal((await fetch(`${p.url}/readyz`)).status, 200);
    await attack(dataDir);
    await p.stop();
  });

  test('intake as an unprivileged user of its own: the same', async () => {
    const owner = ensureUser(OWNER);
    const run = await runnableBy(owner);
    const parent = mkdtempSync(join(tmpdir(), 'intake-local-'));
    chmodSync(parent, 0o755);
    cleanup.push(() => rmSync(parent, { recursive: true, force: true }));
    const dataDir = join(parent, 'data');
    mkdirSync(dataDir, { mode: 0o755 }); // as an older intake left it: tightened at start
    chownSync(dataDir, owner.uid, owner.gid);
    const p = await startAs(dataDir, owner, run);
    assert.equal((await fetch(`${p.url}/readyz`)).status, 200);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    await attack(dataDir);
    await p.stop();
  });
});
