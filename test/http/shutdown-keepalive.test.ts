import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';

/**
 * Issue 8 item 8: on SIGTERM, keep-alive clients whose request is already written must get an
 * answer, never a reset. Node >= 19's server.close() closes idle keep-alive sockets at once, and a
 * socket is "idle" to Node until it has parsed the next request, even when that request is already
 * in the socket's buffer or on the wire.
 */
const CLIENTS = 20;
const SENDER = 'shutdown-keepalive';

interface Outcome {
  status?: number;
  id?: string;
  connection?: string;
  error?: string;
  /** The whole request had been handed to the kernel before the error. */
  written: boolean;
}

/** One POST on the agent's kept-alive connection; never rejects. */
function post(url: string, agent: Agent, body: string): Promise<Outcome> {
  return new Promise((resolve) => {
    let written = false;
    const req = request(
      `${url}/v1/messages`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            ...(res.statusCode === 202 ? { id: (JSON.parse(text) as { id: string }).id } : {}),
            connection: res.headers.connection ?? '',
            written,
          }),
        );
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, written }));
      },
    );
    req.on('finish', () => {
      written = true;
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, written }));
    req.end(body);
  });
}

describe('SIGTERM with keep-alive clients sending continuously', () => {
  let db: TestDatabase;
  let p: IntakeProcess | undefined;
  let worker: IntakeProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'intake-shutdown-ka-'));

  before(async () => {
    db = await createTestDatabase('shutdown_ka');
  });
  after(async () => {
    await p?.stop();
    await worker?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('every written request is answered (202, or 503 with Connection: close), and every 202 stored once', async (t) => {
    const env = { DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir, INTAKE_SHUTDOWN_TIMEOUT_MS: '10000' };
    p = await startIntakeProcess('start', env);
    const outcomes: Outcome[] = [];
    let accepted = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        // Until the server refuses new connections (its listener is closed) or anything fails.
        for (let n = 0; ; n++) {
          const o = await post(
            p!.url,
            agent,
            JSON.stringify({ ts: 1530228282, sender: SENDER, message: { c, n } }),
          );
          outcomes.push(o);
          if (o.status === 202) accepted++;
          if (o.error) return;
        }
      } finally {
        agent.destroy();
      }
    });
    await waitFor('traffic on every connection', () => accepted >= 400, 30_000, 10);
    const atSignal = outcomes.length;
    p.kill('SIGTERM');
    await Promise.all(clients);
    const exit = await p.exited;
    assert.equal(exit.code, 0, `intake exited with ${JSON.stringify(exit)}`);

    const after = outcomes.slice(atSignal);
    const count = (f: (o: Outcome) => boolean) => outcomes.filter(f).length;
    t.diagnostic(
      `${outcomes.length} requests (${after.length} after SIGTERM): ${count((o) => o.status === 202)} × 202, ` +
        `${count((o) => o.status === 503)} × 503, ${count((o) => o.error === 'ECONNREFUSED')} refused connections, ` +
        `${count((o) => o.error !== undefined && o.error !== 'ECONNREFUSED')} other errors`,
    );
    // A refused connection carried no request; anything else that failed did.
    const lost = outcomes.filter((o) => o.error !== undefined && o.error !== 'ECONNREFUSED');
    assert.deepEqual(lost, [], 'requests that were sent got a reset or a broken pipe instead of an answer');
    for (const o of outcomes.filter((o) => o.status !== undefined)) {
      assert.ok(o.status === 202 || (o.status === 503 && o.connection === 'close'), `answered ${o.status}`);
    }
    assert.ok(
      after.some((o) => o.status === 202 && o.connection === 'close'),
      'requests were still answered while the server closed, each with Connection: close',
    );

    // Whatever the API queued and the stopping worker did not store, a worker stores now.
    worker = await startIntakeProcess('worker', env);
    const ids = outcomes.filter((o) => o.id).map((o) => o.id!);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const stored = await waitFor(
        'every 202 to be stored',
        async () => {
          const r = await client.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])',
            [ids],
          );
          return r.rows[0]!.n === ids.length && r.rows[0]!.n;
        },
        30_000,
        100,
      );
      assert.equal(stored, ids.length);
      const all = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM intake.messages WHERE sender = $1',
        [SENDER],
      );
      assert.equal(all.rows[0]!.n, ids.length, 'nothing stored that was not answered 202, nothing twice');
    } finally {
      await client.end();
    }
  });
});
