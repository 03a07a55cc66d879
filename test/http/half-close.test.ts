import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * Issue 22 item 5: a client that shuts down its write side once it has sent the request (`nc -N`,
 * HTTP/1.0 tools, some proxies; RFC 9112 §9.6) gets its answer, as nginx gives it, and what was accepted
 * is stored once. Before, intake served the request (the messages were queued) and closed the
 * connection without a word, so the client retried: a duplicate.
 */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

let app: TestApp;
let db: pg.Client;
let port: number;
before(async () => {
  app = await startTestApp('half_close');
  port = Number(new URL(app.url).port);
  db = new pg.Client({ connectionString: app.db.url });
  await db.connect();
});
after(async () => {
  await db?.end();
  await app?.close();
});

let senders = 0;
/** A sender of its own per request, so counting its rows counts that request's messages. */
const newSender = () => `half-close-${process.pid}-${++senders}`;
const message = (sender: string, n: number) => ({ ts: 1530228282, sender, message: { n } });

/** A whole request: head and body. */
function request(path: string, body: string, version = '1.1'): string {
  return (
    `POST ${path} HTTP/${version}\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** Node: write the request, then `end()` (FIN), then read until the server closes. */
function nodeHalfClose(raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      s.write(raw);
      s.end();
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.setTimeout(15_000, () => s.destroy(new Error('no close within 15 s')));
  });
}

/**
 * Runs a client program with `input` on its stdin; its stdout. Asynchronous: the server answering it
 * runs in this process.
 */
function runClient(cmd: string, args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err}`)),
    );
    child.stdin.end(input);
  });
}

/** Python: `sendall`, then `shutdown(SHUT_WR)`, then read until the server closes. */
function pythonHalfClose(raw: string): Promise<string> {
  const script = [
    'import socket, sys',
    `s = socket.create_connection(("127.0.0.1", ${port}), timeout=15)`,
    's.sendall(sys.stdin.buffer.read())',
    's.shutdown(socket.SHUT_WR)',
    'out = b""',
    'while True:',
    '    d = s.recv(65536)',
    '    if not d: break',
    '    out += d',
    'sys.stdout.buffer.write(out)',
  ].join('\n');
  return runClient(PYTHON, ['-c', script], raw);
}

/** OpenBSD netcat: `-N` shuts down the write side once stdin is at its end. */
function ncHalfClose(raw: string): Promise<string> {
  return runClient('nc', ['-N', '-w', '15', '127.0.0.1', String(port)], raw);
}

/** Why a client is not usable here, or undefined; under CI=true a missing one is an error. */
function missing(name: string, probe: () => boolean): string | undefined {
  if (probe()) return undefined;
  const reason = `${name} is not installed`;
  if (process.env.CI === 'true') throw new Error(`${reason}: CI must provide it`);
  console.log(`# skipping: ${reason}`);
  return reason;
}
const noPython = () => missing(PYTHON, () => spawnSync(PYTHON, ['--version']).status === 0);
// Only OpenBSD's netcat has -N; the traditional one would hang or refuse the flag.
const noNc = () =>
  missing('OpenBSD netcat (nc -N; Debian netcat-openbsd)', () => {
    const r = spawnSync('nc', ['-h'], { encoding: 'utf8' });
    return r.status === 0 && /\s-N\s/.test(`${r.stdout}${r.stderr}`);
  });

/** The status line and JSON body of the one response in `wire`. */
function parse(wire: string): { status: number; body: Record<string, unknown> } {
  const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n[\s\S]*?\r\n\r\n([\s\S]*)$/.exec(wire);
  assert.ok(m, `an HTTP response, got ${JSON.stringify(wire.slice(0, 300))}`);
  return { status: Number(m[1]), body: JSON.parse(m[2]!) };
}

/** Each id is stored exactly once, and the sender has exactly `count` rows. */
async function storedOnce(ids: string[], sender: string, count: number): Promise<void> {
  await waitFor('the accepted messages stored', async () => {
    const r = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1', [sender]);
    return r.rows[0].n >= count;
  });
  const byId = await db.query(
    'SELECT id::text, count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[]) GROUP BY id',
    [ids],
  );
  assert.deepEqual(
    byId.rows.map((r) => r.n),
    ids.map(() => 1),
    'each id stored once',
  );
  const total = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1', [sender]);
  assert.equal(total.rows[0].n, count, 'no duplicate rows for the sender');
}

async function single(send: (raw: string) => Promise<string>, version = '1.1'): Promise<void> {
  const sender = newSender();
  const res = parse(await send(request('/v1/messages', JSON.stringify(message(sender, 1)), version)));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  await storedOnce([res.body.id as string], sender, 1);
}

async function batch(send: (raw: string) => Promise<string>): Promise<void> {
  const sender = newSender();
  const body = JSON.stringify({ messages: [message(sender, 1), message(sender, 2), message(sender, 3)] });
  const res = parse(await send(request('/v1/messages/batch', body)));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const items = res.body.items as Array<{ id: string; status: string }>;
  assert.deepEqual(
    items.map((i) => i.status),
    ['accepted', 'accepted', 'accepted'],
  );
  await storedOnce(
    items.map((i) => i.id),
    sender,
    3,
  );
}

describe('a client that half-closes after its request gets the answer; what was accepted is stored once', () => {
  test('Node socket end() after a single POST (HTTP/1.1)', () => single(nodeHalfClose));
  test('Node socket end() after a single POST (HTTP/1.0)', () => single(nodeHalfClose, '1.0'));
  test('Node socket end() after a batch POST', () => batch(nodeHalfClose));
  test('Python shutdown(SHUT_WR) after a single POST', { skip: noPython() }, () => single(pythonHalfClose));
  test('Python shutdown(SHUT_WR) after a batch POST', { skip: noPython() }, () => batch(pythonHalfClose));
  test('nc -N after a single POST', { skip: noNc() }, () => single(ncHalfClose));
  test('nc -N after a batch POST', { skip: noNc() }, () => batch(ncHalfClose));

  test('a FIN before the body is complete is still a 400, and nothing is stored', async () => {
    const sender = newSender();
    const body = JSON.stringify(message(sender, 1));
    const truncated = request('/v1/messages', body).replace(
      `content-length: ${body.length}`,
      `content-length: ${body.length + 10}`,
    );
    const res = parse(await nodeHalfClose(truncated));
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'INVALID_REQUEST');
    // A message accepted by mistake would be stored within this time by the running worker.
    await new Promise((r) => setTimeout(r, 1000));
    const r = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1', [sender]);
    assert.equal(r.rows[0].n, 0);
  });
});
