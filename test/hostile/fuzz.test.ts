import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';

/**
 * 10,000 generated hostile requests against a real `intake start` process: mutated messages, wrong
 * types, huge numbers, arrays and strings, deep nesting, invalid UTF-8, duplicate keys, broken JSON,
 * odd content types and encodings, oversized and garbage headers, garbage paths, queries and methods.
 * Every answer must be < 500 or a 503; the process stays alive with bounded memory; every 202 is stored
 * exactly once. Seeded (FUZZ_SEED=n to replay a run), bounded in count and time.
 */
const COUNT = Number(process.env.FUZZ_COUNT ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

/** mulberry32: a small seeded PRNG, so a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

function generator(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const weird = [
    null,
    true,
    false,
    0,
    -1,
    1.5,
    1e308,
    -1e308,
    2 ** 53 + 1,
    253402300800,
    1530228282000,
    '',
    ' ',
    '1530228282',
    '01530228282',
    '-1',
    '1e9',
    '\u0000',
    '\ud800',
    'é',
    '💥',
    '1.2.3.4',
    '256.1.1.1',
    '01.2.3.4',
    '::1',
    '1.2.3.4/24',
    [],
    {},
    [1, 2],
    { a: null },
    'x'.repeat(300),
  ] as const;
  const keys = [
    'ts',
    'sender',
    'message',
    'sent-from-ip',
    'priority',
    'TS',
    '__proto__',
    'constructor',
    'extra',
    '',
    'é',
  ];
  const valid = () => ({
    ts: rand() < 0.5 ? 1530228282 : '1530228282',
    sender: `fuzz-${int(20)}`,
    message: { foo: 'bar', n: int(1000) },
    ...(rand() < 0.5 ? { 'sent-from-ip': `${int(256)}.${int(256)}.${int(256)}.${int(256)}` } : {}),
    ...(rand() < 0.3 ? { priority: int(10) } : {}),
  });
  const deep = (d: number): unknown => (d === 0 ? 1 : rand() < 0.5 ? { a: deep(d - 1) } : [deep(d - 1)]);
  const mutate = (m: Record<string, unknown>) => {
    for (let i = 1 + int(3); i > 0; i--) {
      switch (int(9)) {
        case 0:
          delete m[pick(keys)];
          break;
        case 1:
          m[pick(keys)] = pick(weird);
          break;
        case 2:
          m.message = { ...((m.message as object) ?? {}), [pick(keys)]: pick(weird) };
          break;
        case 3:
          m.message = { deep: deep(1 + int(60)) };
          break;
        case 4: // huge values, rarely: each costs real parse time on both sides
          m.message =
            rand() < 0.1 ? { list: Array.from({ length: int(50_000) }, () => int(10)) } : { list: [1, 2] };
          break;
        case 5:
          m.message = { s: 'x'.repeat(rand() < 0.1 ? int(400_000) : int(3000)) };
          break;
        case 6:
          m[`k${int(100)}`] = pick(weird);
          break;
        case 7:
          m.priority = pick([2 ** 31, -(2 ** 31) - 1, 1.1, '2', 2 ** 31 - 1]);
          break;
        default:
          m.sender = pick(weird);
      }
    }
    return m;
  };
  const text = (): Buffer => {
    const m = mutate(valid());
    let s = JSON.stringify(m);
    switch (int(10)) {
      case 0:
        s = s.slice(0, int(s.length)); // truncated
        break;
      case 1:
        s = s.replace('"sender"', `"sender":"dup","sender"`); // duplicate key
        break;
      case 2: {
        const b = Buffer.from(s);
        const at = int(b.length);
        return Buffer.concat([
          b.subarray(0, at),
          Buffer.from([pick([0xff, 0xc3, 0xed, 0x80, 0xfe])]),
          b.subarray(at),
        ]);
      }
      case 3:
        return Buffer.from(Array.from({ length: int(2000) }, () => int(256)));
      case 4:
        s = pick(['[', '{', '"', 'null', '[]', '1e400', '{"ts":1e400}', '[[[[[[', '\ufeff{}', '']).repeat(
          1 + int(500),
        );
        break;
    }
    return Buffer.from(s);
  };
  const contentType = () =>
    pick([
      'application/json',
      'application/json',
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'application/JSON',
      'text/plain',
      'application/x-ndjson',
      'multipart/form-data; boundary=x',
      'application/json, text/plain',
      'application/json; charset="utf-8"; x=y',
      '',
      ';;;',
    ]);
  return (): Req => {
    const kind = int(20);
    const headers: Record<string, string> = {};
    if (rand() < 0.2)
      headers['idempotency-key'] = pick(['k', 'x'.repeat(int(400)), `key-${int(50)}`, ' ', '\t']);
    if (rand() < 0.1) headers.authorization = pick(['Bearer', 'Bearer x', 'Basic abc', 'x'.repeat(3000)]);
    if (rand() < 0.05) headers['x-big'] = 'x'.repeat(pick([1000, 10_000, 20_000, 100_000]));
    if (rand() < 0.05)
      headers['content-encoding'] = pick(['gzip', 'br', 'identity', 'bogus', 'deflate, gzip']);
    if (rand() < 0.05) headers['x-request-id'] = pick(['x'.repeat(500), 'a b', '../../etc']);
    if (kind < 11) {
      const ct = contentType();
      if (ct) headers['content-type'] = ct;
      return { method: 'POST', path: '/v1/messages', headers, body: text() };
    }
    if (kind < 15) {
      const items = Array.from({ length: int(rand() < 0.1 ? 1500 : 30) }, () =>
        rand() < 0.8 ? valid() : mutate(valid()),
      );
      headers['content-type'] = contentType() || 'application/json';
      const body = rand() < 0.1 ? { messages: pick(weird) } : { messages: items };
      return { method: 'POST', path: '/v1/messages/batch', headers, body: Buffer.from(JSON.stringify(body)) };
    }
    const junk = () =>
      pick([
        '%zz',
        '%00',
        '..',
        'x'.repeat(int(300)),
        '01890a5d-ac96-774b-bcce-b302099a8057',
        '-'.repeat(36),
        '%E0%A4%A',
        '%F0%9F%99%82',
      ]);
    const query = () =>
      pick(['sender', 'since', 'until', 'limit', 'cursor', 'bogus', 'limit[]']).concat(
        '=',
        pick([junk(), '-1', '0', '1001', '1e3', '99999999999999', '2024-13-45', 'abc']),
      );
    const path = pick([
      `/v1/messages?${query()}&${query()}`,
      `/v1/messages/${junk()}`,
      `/v1/messages/${junk()}/revealed`,
      `/v1/subjects/ip/${junk()}/messages`,
      `/v1/subjects/ip/${junk()}`,
      `/${junk()}`,
      '/readyz',
      '/metrics',
      '/openapi.json',
    ]);
    return { method: pick(['GET', 'GET', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD']), path, headers };
  };
}

function rssMiB(pid: number): number {
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 0; // exited: the assertions below say so
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return Number(m?.[1] ?? 0) / 1024;
}

let tdb: TestDatabase;
let proc: IntakeProcess;
before(async () => {
  tdb = await createTestDatabase('fuzz');
  proc = await startIntakeProcess('start', { DATABASE_URL: tdb.url, LOG_LEVEL: 'warn' });
});
after(async () => {
  await proc?.stop();
  await tdb?.drop();
});

test(`${COUNT} hostile requests: no 5xx but 503, alive, bounded memory, every 202 stored once (seed ${SEED})`, async () => {
  const next = generator(prng(SEED));
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const { port } = new URL(proc.url);
  const statuses = new Map<number, number>();
  const bad: string[] = [];
  const accepted: string[] = [];
  let clientErrors = 0;
  let maxRss = rssMiB(proc.child.pid!);
  const startRss = maxRss;
  const sampler = setInterval(() => {
    if (proc.child.exitCode === null) maxRss = Math.max(maxRss, rssMiB(proc.child.pid!));
  }, 200);
  const started = Date.now();
  let unsendable = 0;
  const send = (r: Req) =>
    new Promise<void>((resolve) => {
      let req: ReturnType<typeof request>;
      try {
        req = request(
          { host: '127.0.0.1', port, method: r.method, path: r.path, headers: r.headers, agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              statuses.set(status, (statuses.get(status) ?? 0) + 1);
              const body = Buffer.concat(chunks).toString();
              if (status >= 500 && status !== 503)
                bad.push(`${status} ${r.method} ${r.path.slice(0, 80)}: ${body.slice(0, 200)}`);
              if (status === 202 && r.path === '/v1/messages')
                accepted.push((JSON.parse(body) as { id: string }).id);
              if (status === 202 && r.path === '/v1/messages/batch')
                for (const item of (JSON.parse(body) as { items: Array<{ id: string }> }).items)
                  accepted.push(item.id);
              resolve();
            });
            res.on('error', () => {
              clientErrors++;
              resolve();
            });
          },
        );
      } catch {
        unsendable++; // node:http refuses to send it at all (e.g. a header value it will not write)
        resolve();
        return;
      }
      req.on('error', () => {
        clientErrors++;
        resolve();
      });
      req.setTimeout(20_000, () => req.destroy());
      req.end(r.body);
    });
  let sent = 0;
  try {
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        // Count-bounded: all COUNT requests are sent (about 27 s on a quiet 2-core machine), with a stop at
        // 4 minutes so a hung server cannot hold CI; the assertion below then names the shortfall.
        while (sent < COUNT && Date.now() - started < 240_000) {
          sent++;
          await send(next());
        }
      }),
    );
  } finally {
    clearInterval(sampler);
    agent.destroy();
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `fuzz seed ${SEED}: ${sent} requests in ${seconds.toFixed(1)} s, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
      `client-side errors ${clientErrors}, unsendable ${unsendable}, RSS ${startRss.toFixed(0)} → max ${maxRss.toFixed(0)} MiB, ${accepted.length} accepted`,
  );
  assert.equal(proc.child.exitCode, null, `intake exited: ${proc.stderr.join('').slice(-2000)}`);
  assert.equal(sent, COUNT, `only ${sent} of ${COUNT} requests sent in ${seconds} s`);
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} answers were a 5xx other than 503`);
  // Connections the server closes on purpose (431, malformed requests) can surface as client errors;
  // a crash or a hang would make many.
  assert.ok(clientErrors < sent * 0.01, `${clientErrors} requests got no answer`);
  assert.equal((await fetch(`${proc.url}/livez`)).status, 200, 'the process is alive');
  assert.equal(proc.child.exitCode, null);
  assert.ok(maxRss < startRss + 400, `RSS grew from ${startRss.toFixed(0)} to ${maxRss.toFixed(0)} MiB`);

  const db = new pg.Client({ connectionString: tdb.url });
  await db.connect();
  try {
    await waitFor(
      'every accepted message stored',
      async () => (await db.query('SELECT count(*)::int AS n FROM intake.queue')).rows[0].n === 0,
      60_000,
    );
    const r = await db.query<{ id: string; n: number }>(
      'SELECT id::text, count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[]) GROUP BY id',
      [accepted],
    );
    const unique = new Set(accepted);
    assert.equal(r.rows.length, unique.size, 'every 202 id is stored');
    assert.ok(
      r.rows.every((row) => row.n === 1),
      'none twice',
    );
  } finally {
    await db.end();
  }
});
