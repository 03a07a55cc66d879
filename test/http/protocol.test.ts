import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import pg from 'pg';
import { waitFor } from '../../harness/db.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';
import { expectProblem } from '../helpers/problem.ts';

const msg = (n: number, sender = 'proto') => ({ ts: 1530228282, sender, message: { n } });

interface Results {
  items: Array<
    | { status: 'accepted'; id: string }
    | { status: 'rejected'; errors: Array<{ pointer: string; detail: string }> }
  >;
  accepted: number;
  rejected: number;
}

const hasZstd = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';

describe('ingest protocol: compressed bodies, per-item batches, NDJSON', () => {
  let app: TestApp;
  let db: pg.Client;
  before(async () => {
    app = await startTestApp('protocol');
    db = new pg.Client({ connectionString: app.db.url });
    await db.connect();
  });
  after(async () => {
    await db.end();
    await app.close();
  });

  const send = (path: string, body: Buffer | string, headers: Record<string, string>) =>
    fetch(app.url + path, { method: 'POST', headers, body });
  const storedIds = async (ids: string[]) => {
    await waitFor('stored', async () => {
      const r = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])', [
        ids,
      ]);
      return r.rows[0].n === ids.length;
    });
  };

  const encoders: Array<[string, (b: Buffer) => Buffer]> = [
    ['gzip', zlib.gzipSync],
    ['x-gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
    ['deflate', zlib.deflateRawSync],
    ['br', zlib.brotliCompressSync],
    ['identity', (b) => b],
  ];
  if (hasZstd)
    encoders.push([
      'zstd',
      (zlib as unknown as { zstdCompressSync: (b: Buffer) => Buffer }).zstdCompressSync,
    ]);
  for (const [encoding, encode] of encoders) {
    test(`Content-Encoding ${encoding}${encode === zlib.deflateRawSync ? ' (raw)' : ''}: decompressed, accepted, stored`, async () => {
      const res = await send('/v1/messages', encode(Buffer.from(JSON.stringify(msg(1)))), {
        'content-type': 'application/json',
        'content-encoding': encoding,
      });
      assert.equal(res.status, 202, await res.clone().text());
      await storedIds([((await res.json()) as { id: string }).id]);
    });
  }

  test('an unknown or stacked encoding → 415 naming what is accepted', async () => {
    for (const encoding of ['compress', 'gzip, br', hasZstd ? 'lz4' : 'zstd']) {
      const res = await send('/v1/messages', JSON.stringify(msg(1)), {
        'content-type': 'application/json',
        'content-encoding': encoding,
      });
      await expectProblem(res, 415, 'UNSUPPORTED_ENCODING');
      assert.match(res.headers.get('accept-encoding') ?? '', /gzip/);
    }
  });

  test('a corrupt encoded body on a request answered before parsing never hurts the process', async () => {
    // Found by the fuzz test: the decompressor's error had no listener and crashed the process.
    const get = await fetch(`${app.url}/v1/messages/01890a5d-ac96-774b-bcce-b302099a8057`, {
      headers: { 'content-encoding': 'gzip' },
    });
    assert.equal(get.status, 404);
    const wrongType = await send('/v1/messages', 'not gzip at all', {
      'content-type': 'text/plain',
      'content-encoding': 'gzip',
    });
    await expectProblem(wrongType, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const other = await send('/v1/nothing', 'not br', {
      'content-type': 'application/json',
      'content-encoding': 'br',
    });
    assert.ok([400, 404].includes(other.status), `${other.status}`); // the 404 route parses bodies too
    assert.equal((await fetch(`${app.url}/livez`)).status, 200);
  });

  test('a body that is not what its encoding says → 400', async () => {
    const res = await send('/v1/messages', JSON.stringify(msg(1)), {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    const p = await expectProblem(res, 400, 'INVALID_REQUEST');
    assert.match(p.detail, /not valid gzip/);
  });

  test('a 512 MiB gzip bomb is refused with 413 at once, with flat memory', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(512 * 1024 * 1024), { level: 9 });
    const rss = process.memoryUsage().rss;
    const started = performance.now();
    const res = await send('/v1/messages', bomb, {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    const ms = performance.now() - started;
    const p = await expectProblem(res, 413, 'BODY_TOO_LARGE');
    assert.match(p.detail, /decompressed/);
    const grew = (process.memoryUsage().rss - rss) / 1048576;
    console.log(
      `gzip bomb: ${bomb.length} bytes → 512 MiB; refused in ${ms.toFixed(0)} ms; RSS +${grew.toFixed(1)} MiB`,
    );
    assert.ok(ms < 2000, `${ms} ms`);
    assert.ok(grew < 64, `RSS grew ${grew} MiB`);
  });

  test('partial mode: valid items are queued, invalid ones rejected, one result per item in order', async () => {
    const messages = [msg(1), { ts: -1, sender: '', message: {} }, msg(2), { ...msg(3), extra: 1 }, msg(4)];
    const headers = { 'content-type': 'application/json', 'idempotency-key': 'partial-1' };
    const res = await send('/v1/messages/batch?mode=partial', JSON.stringify({ messages }), headers);
    assert.equal(res.status, 207);
    const r = (await res.json()) as Results;
    assert.deepEqual(
      r.items.map((i) => i.status),
      ['accepted', 'rejected', 'accepted', 'rejected', 'accepted'],
    );
    assert.equal(r.accepted, 3);
    assert.equal(r.rejected, 2);
    const second = r.items[1] as { errors: Array<{ pointer: string }> };
    assert.deepEqual(second.errors.map((e) => e.pointer).sort(), ['/message', '/sender', '/ts']);
    assert.deepEqual(
      (r.items[3] as { errors: Array<{ pointer: string }> }).errors.map((e) => e.pointer),
      ['/extra'],
    );
    const ids = r.items.flatMap((i) => (i.status === 'accepted' ? [i.id] : []));
    await storedIds(ids);
    // The same request again (a retry) answers the same ids and stores nothing twice.
    const again = (await (
      await send('/v1/messages/batch?mode=partial', JSON.stringify({ messages }), headers)
    ).json()) as Results;
    assert.deepEqual(
      again.items.flatMap((i) => (i.status === 'accepted' ? [i.id] : [])),
      ids,
    );
    const n = await db.query('SELECT count(*)::int AS n FROM intake.messages WHERE id = ANY($1::uuid[])', [
      ids,
    ]);
    assert.equal(n.rows[0].n, 3);
  });

  test('partial mode still refuses a malformed envelope or an unknown mode as a whole', async () => {
    await expectProblem(
      await send('/v1/messages/batch?mode=partial', JSON.stringify({ messages: 'x' }), {
        'content-type': 'application/json',
      }),
      400,
      'INVALID_MESSAGE',
    );
    await expectProblem(
      await send('/v1/messages/batch?mode=some', JSON.stringify({ messages: [msg(1)] }), {
        'content-type': 'application/json',
      }),
      400,
      'INVALID_REQUEST',
    );
  });

  test('NDJSON: one result per non-blank line; a bad line costs only itself; gzip works too', async () => {
    const lines = [
      JSON.stringify(msg(1)),
      '',
      '{not json',
      JSON.stringify({ ts: 'soon', sender: 'x', message: { a: 1 } }),
      `${JSON.stringify(msg(2))}\r`,
    ];
    for (const encoding of ['identity', 'gzip']) {
      const raw = Buffer.from(`${lines.join('\n')}\n`);
      const res = await send('/v1/messages/batch', encoding === 'gzip' ? zlib.gzipSync(raw) : raw, {
        'content-type': 'application/x-ndjson',
        'content-encoding': encoding,
      });
      assert.equal(res.status, 207, await res.clone().text());
      const r = (await res.json()) as Results;
      assert.deepEqual(
        r.items.map((i) => i.status),
        ['accepted', 'rejected', 'rejected', 'accepted'],
      );
      assert.match((r.items[1] as { errors: Array<{ detail: string }> }).errors[0]!.detail, /not valid JSON/);
      assert.equal((r.items[2] as { errors: Array<{ pointer: string }> }).errors[0]!.pointer, '/ts');
      await storedIds(r.items.flatMap((i) => (i.status === 'accepted' ? [i.id] : [])));
    }
  });

  test('NDJSON limits: more than 10,000 lines → 400; more than the body limit → 413', async () => {
    const many = `${Array(10_001).fill('{}').join('\n')}\n`;
    await expectProblem(
      await send('/v1/messages/batch', many, { 'content-type': 'application/x-ndjson' }),
      400,
      'INVALID_REQUEST',
    );
    const line = JSON.stringify({ ...msg(1), message: { s: 'x'.repeat(1000) } });
    const big = `${Array(1100).fill(line).join('\n')}\n`;
    assert.ok(big.length > 1024 * 1024);
    await expectProblem(
      await send('/v1/messages/batch', big, { 'content-type': 'application/x-ndjson' }),
      413,
      'BODY_TOO_LARGE',
    );
  });

  test('NDJSON of 10,000 valid lines is accepted in one request', async () => {
    const body = `${Array.from({ length: 10_000 }, (_, i) => JSON.stringify(msg(i, 'bulk'))).join('\n')}\n`;
    const res = await send('/v1/messages/batch', zlib.gzipSync(Buffer.from(body)), {
      'content-type': 'application/x-ndjson',
      'content-encoding': 'gzip',
    });
    assert.equal(res.status, 207);
    const r = (await res.json()) as Results;
    assert.equal(r.accepted, 10_000);
    await waitFor(
      'bulk stored',
      async () =>
        (await db.query(`SELECT count(*)::int AS n FROM intake.messages WHERE sender = 'bulk'`)).rows[0].n ===
        10_000,
      60_000,
    );
  });
});
