import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createTestDatabase, waitFor } from '../../harness/db.ts';
import { startIntakeProcess } from '../../harness/intake-process.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { apiProcesses } from '../helpers/api-cluster.ts';

/**
 * INTAKE_API_WORKERS=2: a key's token bucket is the pod's, not each process's. A connection is placed
 * on each of the two API processes (which process accepted it is read from /proc), the first drains the
 * key's burst, and the second, on the other process, is refused: per process, it would have had a
 * burst of its own.
 */
/** The process among `pids` holding the server side of the loopback connection from `clientPort`. */
function acceptedBy(serverPort: number, clientPort: number, pids: number[]): number | undefined {
  const hex = (p: number) => `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  const row = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === hex(serverPort) && f[2] === hex(clientPort));
  const inode = row?.[9];
  if (!inode || inode === '0') return undefined;
  for (const pid of pids) {
    const fds = readdirSync(`/proc/${pid}/fd`);
    if (fds.some((fd) => readlinkSyncSafe(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`)) return pid;
  }
  return undefined;
}
function readlinkSyncSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined; // an fd closed meanwhile
  }
}

/** A keep-alive HTTP/1.1 connection that sends requests one at a time and reads their statuses. */
class Connection {
  private text = '';
  private seen = 0;
  constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.text += d;
    });
  }
  async post(key: string): Promise<number> {
    const body = JSON.stringify({ ts: 1530228282, sender: 'cluster-rl', message: { n: 1 } });
    this.socket.write(
      `POST /v1/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    const statuses = await waitFor('an answer', () => {
      // A response follows the previous body directly: no line start to anchor on.
      const all = [...this.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      return all.length > this.seen ? all : undefined;
    });
    return statuses[this.seen++]!;
  }
}

test('INTAKE_API_WORKERS=2: the rate limit holds per pod, whichever process a connection lands on', async (t) => {
  const db = await createTestDatabase('api_cluster_rl');
  const dir = mkdtempSync(join(tmpdir(), 'api-cluster-rl-'));
  t.after(async () => {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const limited = generateKey('limited', ['ingest']);
  limited.entry.rateLimit = { perSecond: 0.01, burst: 5 };
  const env = {
    DATABASE_URL: db.url,
    INTAKE_DATA_DIR: dir,
    INTAKE_API_WORKERS: '2',
    INTAKE_API_KEYS: JSON.stringify([limited.entry]),
  };
  const api = await startIntakeProcess('api', env, { timeoutMs: 60_000 });
  t.after(() => api.stop(5000));
  const kids = await apiProcesses(api);

  // One connection on each process: connect until the kernel has handed one to each.
  const on = new Map<number, Connection>();
  const sockets: Socket[] = [];
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  for (let i = 0; i < 200 && on.size < 2; i++) {
    const s = connect({ host: '127.0.0.1', port: api.port });
    sockets.push(s);
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
    const pid = await waitFor(
      'the connection accepted',
      () => acceptedBy(api.port, s.localPort!, kids),
      5000,
      10,
    );
    if (!on.has(pid)) on.set(pid, new Connection(s));
  }
  assert.equal(on.size, 2, 'a connection on each API process');
  const [first, second] = [...on.values()];

  const a: number[] = [];
  for (let i = 0; i < 5; i++) a.push(await first!.post(limited.key));
  assert.deepEqual(a, [202, 202, 202, 202, 202], 'the burst, on the first process');
  const b: number[] = [];
  for (let i = 0; i < 3; i++) b.push(await second!.post(limited.key));
  assert.deepEqual(b, [429, 429, 429], 'the other process shares the bucket');
  assert.equal(await first!.post(limited.key), 429);
});
