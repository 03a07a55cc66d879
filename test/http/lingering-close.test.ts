import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase, waitFor } from '../../harness/db.ts';
import { type IntakeProcess, startIntakeProcess } from '../../harness/intake-process.ts';
import { generateKey } from '../../src/auth/api-keys.ts';
import { RawConnection, requestHead } from '../clients/raw-http.ts';
import { type EdgeApp, startEdgeApp } from './edge-app.ts';

/**
 * Issue 15 on the wire: what intake does with the rest of a body it answered without reading. Raw
 * sockets, so each step (headers, response, body, close) happens in a known order.
 */
const LIMIT = 16 * 1024;
const ok = JSON.stringify({ ts: 1530228282, sender: 's', message: { a: 1 } });

describe('refusals: keep-alive after a drained body, lingering close otherwise, Expect: 100-continue', () => {
  const ingest = generateKey('ingester', ['ingest']);
  const auth = { authorization: `Bearer ${ingest.key}` };
  const json = { 'content-type': 'application/json' };
  let app: EdgeApp;
  const queued = () => app.queued();

  before(async () => {
    app = await startEdgeApp('linger', {
      INTAKE_BODY_LIMIT_BYTES: String(LIMIT),
      INTAKE_API_KEYS: JSON.stringify([ingest.entry]),
      INTAKE_LINGERING_TIME_MS: '1500',
      INTAKE_LINGERING_TIMEOUT_MS: '500',
    });
  });
  afterEach(() => RawConnection.destroyAll());
  after(() => app?.close());

  test('a refusal whose small body is read away keeps the connection usable', async () => {
    const c = await RawConnection.connect(app.url);
    const body = 'x'.repeat(LIMIT);
    await c.write(requestHead('POST', '/v1/messages', { ...json, 'content-length': body.length }));
    const refused = await c.response();
    assert.equal(refused?.status, 401, 'answered from the headers, before the body was sent');
    assert.notEqual(refused.headers.connection, 'close');
    assert.equal(JSON.parse(refused.body).code, 'UNAUTHENTICATED');
    await c.write(body);
    await c.write(
      requestHead('POST', '/v1/messages', { ...json, ...auth, 'content-length': ok.length }) + ok,
    );
    const next = await c.response();
    assert.equal(next?.status, 202, 'the next request on the same connection is served');
    c.destroy();
  });

  test('a refusal of a small body the client wants closed (Connection: close) still reads it first', async () => {
    const c = await RawConnection.connect(app.url);
    const body = 'x'.repeat(LIMIT);
    await c.write(
      requestHead('POST', '/v1/messages', { ...json, connection: 'close', 'content-length': body.length }),
    );
    const refused = await c.response();
    assert.equal(refused?.status, 401);
    assert.equal(refused.headers.connection, 'close');
    await waitFor('the server to finish its side', () => c.ended, 5000, 5);
    await c.write(body);
    assert.equal(await app.connections(), 1, 'the server still reads, instead of having closed');
    c.end();
    const closed = await c.closed;
    assert.equal(closed.reset, false, `closed cleanly, not reset (${closed.error})`);
  });

  for (const [name, head] of [
    ['Content-Length over the limit', { ...json, ...auth, 'content-length': 8 * LIMIT }],
    ['a chunked body', { ...json, 'transfer-encoding': 'chunked' }],
  ] as const) {
    test(`a refusal of ${name}: Connection: close, the rest is read, nothing after it is served`, async () => {
      const before = await queued();
      const c = await RawConnection.connect(app.url);
      await c.write(requestHead('POST', '/v1/messages', head));
      const chunked = 'transfer-encoding' in head;
      const piece = 'x'.repeat(4096);
      // Chunked without a key: 401 from the headers. With a key, 413 once the count passes the limit.
      if (chunked) await c.write(`${(4096).toString(16)}\r\n${piece}\r\n`);
      const refused = await c.response();
      assert.equal(refused?.status, chunked ? 401 : 413);
      assert.equal(refused.headers.connection, 'close');
      assert.equal(refused.headers['content-type'], 'application/problem+json; charset=utf-8');
      // The client keeps sending: every byte is taken, not answered with a reset.
      for (let sent = 0; sent < 8 * LIMIT; sent += piece.length) {
        await c.write(chunked ? `${(4096).toString(16)}\r\n${piece}\r\n` : piece);
      }
      if (chunked) await c.write('0\r\n\r\n');
      // A request pipelined after the close is neither answered nor acted upon.
      await c.write(
        requestHead('POST', '/v1/messages', { ...json, ...auth, 'content-length': ok.length }) + ok,
      );
      c.end();
      const closed = await c.closed;
      assert.equal(closed.reset, false, `closed cleanly, not reset (${closed.error})`);
      assert.equal(await c.response(100), undefined, 'no answer to the pipelined request');
      assert.equal(await queued(), before, 'the pipelined message was not queued');
    });
  }

  test('a client that keeps trickling is cut at the lingering time', async () => {
    const c = await RawConnection.connect(app.url);
    await c.write(requestHead('POST', '/v1/messages', { ...json, 'content-length': 100 * LIMIT }));
    const refused = await c.response();
    assert.equal(refused?.status, 401);
    // Never quiet for the 500 ms lingering timeout: only the 1500 ms lingering time can end it.
    const trickle = setInterval(() => c.write('x').catch(() => {}), 100);
    await app.allClosed();
    const lingered = c.elapsed() - refused.at;
    const closed = await c.closed; // the next byte trickled is answered with a reset
    clearInterval(trickle);
    assert.equal(closed.reset, true);
    assert.ok(lingered >= 1400 && lingered < 4000, `cut ${lingered} ms after the answer`);
  });

  test('a client that goes quiet mid-body is cut at the lingering timeout', async () => {
    const c = await RawConnection.connect(app.url);
    await c.write(requestHead('POST', '/v1/messages', { ...json, 'content-length': 100 * LIMIT }));
    const refused = await c.response();
    assert.equal(refused?.status, 401);
    await c.write('x'.repeat(1000));
    await app.allClosed();
    const lingered = c.elapsed() - refused.at;
    c.destroy();
    assert.ok(lingered >= 450 && lingered < 1400, `cut ${lingered} ms after the answer`);
  });

  /** A connection whose request head asks for `100 Continue`, with `headers` and this Content-Length. */
  async function expecting(headers: Record<string, string>, length: number): Promise<RawConnection> {
    const c = await RawConnection.connect(app.url);
    const head = { ...json, expect: '100-continue', ...headers, 'content-length': length };
    await c.write(requestHead('POST', '/v1/messages', head));
    return c;
  }

  test('Expect: 100-continue with a Content-Length over the limit: 413 at once, no 100', async () => {
    const c = await expecting(auth, 64 * LIMIT);
    const first = await c.response();
    assert.equal(first?.status, 413);
    assert.equal(JSON.parse(first.body).code, 'BODY_TOO_LARGE');
    assert.equal(first.headers.connection, 'close');
    c.end();
    assert.equal((await c.closed).reset, false);
  });

  test('Expect: 100-continue without a valid key: 401 at once, no 100', async () => {
    for (const key of [{}, { authorization: 'Bearer ik_wrong' }] as Array<Record<string, string>>) {
      const c = await expecting(key, ok.length);
      const first = await c.response();
      assert.equal(first?.status, 401);
      assert.equal(JSON.parse(first.body).code, 'UNAUTHENTICATED');
      assert.equal(first.headers.connection, 'close', 'the client may or may not send the body now');
      c.destroy();
    }
  });

  test('Expect: 100-continue on a valid request: 100, then the body, then 202', async () => {
    // Written as some clients do: Node still treats it as 100-continue, so intake must answer it.
    const c = await expecting({ ...auth, expect: '100-Continue; q=1' }, ok.length);
    assert.equal((await c.response())?.status, 100);
    await c.write(ok);
    const res = await c.response();
    assert.equal(res?.status, 202);
    assert.notEqual(res.headers.connection, 'close');
    c.destroy();
  });
});

describe('draining a refused body keeps memory flat', () => {
  let db: TestDatabase;
  let p: IntakeProcess;
  const dataDir = mkdtempSync(join(tmpdir(), 'intake-drain-'));

  before(async () => {
    db = await createTestDatabase('drain');
    p = await startIntakeProcess('api', { DATABASE_URL: db.url, INTAKE_DATA_DIR: dataDir });
  });
  afterEach(() => RawConnection.destroyAll());
  after(async () => {
    await p?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const status = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${p.child.pid}/status`, 'utf8'),
    );
    return Number(m?.[1]) * 1024;
  };

  for (const chunked of [false, true]) {
    test(`a 64 MiB body refused with 413 (${chunked ? 'chunked' : 'Content-Length'}): RSS grows < 10 MiB`, async () => {
      const size = 64 * 1024 * 1024;
      const head = {
        'content-type': 'application/json',
        ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': size }),
      };
      const before = status('VmRSS');
      // Reset the peak (VmHWM) to the current RSS, so the peak below is the drain's; also sampled.
      writeFileSync(`/proc/${p.child.pid}/clear_refs`, '5');
      let sampled = before;
      const sampler = setInterval(() => {
        sampled = Math.max(sampled, status('VmRSS'));
      }, 5);
      const c = await RawConnection.connect(p.url);
      await c.write(requestHead('POST', '/v1/messages', head));
      const piece = Buffer.alloc(64 * 1024, 'x');
      const frame = chunked
        ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')])
        : piece;
      let refused: Awaited<ReturnType<RawConnection['response']>>;
      const answer = c.response(30_000).then((r) => {
        refused = r;
      });
      for (let sent = 0; sent < size; sent += piece.length) await c.write(frame);
      if (chunked) await c.write('0\r\n\r\n');
      await answer;
      c.end();
      const closed = await c.closed;
      clearInterval(sampler);
      const peak = Math.max(sampled, status('VmHWM'));
      assert.equal(refused?.status, 413);
      assert.equal(closed.reset, false, 'all 64 MiB were read, none reset');
      const grew = (peak - before) / 1024 / 1024;
      console.log(
        `# RSS ${(before / 1024 / 1024).toFixed(1)} MiB, peak while draining +${grew.toFixed(1)} MiB`,
      );
      assert.ok(grew < 10, `RSS grew ${grew.toFixed(1)} MiB`);
    });
  }

  test('after the drains, new connections (reusing the HTTP parsers Node pools) still get their bodies', async () => {
    const body = JSON.stringify({ ts: 1530228282, sender: 's', message: { a: 1 } });
    for (let i = 0; i < 3; i++) {
      const c = await RawConnection.connect(p.url);
      await c.write(
        requestHead('POST', '/v1/messages', {
          'content-type': 'application/json',
          'content-length': body.length,
        }) + body,
      );
      assert.equal((await c.response())?.status, 202);
      c.destroy();
    }
  });
});
