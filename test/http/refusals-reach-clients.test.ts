import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKey } from '../../src/http/api-keys.ts';
import { availableClients, type Client, tally, type Upload } from '../clients/clients.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * Issue 15: every early refusal reaches the client that is still uploading. Real clients (see
 * test/clients/) send bodies of 1.5×, 24× and 64× the body limit (64 KiB here, so 64× is 4 MiB: more
 * than loopback socket buffers hold, which is what turns an early close into a reset) through each
 * refusal intake makes before reading a body, 20 times each, and must read the exact status every time.
 */
const LIMIT = 64 * 1024;
const TRIES = 20;
const FACTORS = [1.5, 24, 64];

describe('every early refusal reaches real clients that are still uploading', () => {
  const ingest = generateKey('ingester', ['ingest']);
  const reader = generateKey('reader', ['read']);
  const limited = generateKey('limited', ['ingest']);
  // One token, refilled every ~3 hours: after the first request every one is refused with 429.
  limited.entry.rateLimit = { perSecond: 0.0001, burst: 1 };
  const bearer = (k: { key: string }) => `Bearer ${k.key}`;
  let app: TestApp;
  let clients: Client[] = [];
  let cleanup = () => {};
  const files = new Map<number, string>();

  before(async () => {
    app = await startTestApp('refusals', {
      roles: ['api'],
      env: {
        INTAKE_BODY_LIMIT_BYTES: String(LIMIT),
        INTAKE_API_KEYS: JSON.stringify([ingest.entry, reader.entry, limited.entry]),
      },
    });
    ({ clients, cleanup } = availableClients());
    for (const f of FACTORS) {
      // A JSON message whose only fault is its size.
      const size = Math.round(LIMIT * f);
      const head = '{"ts":1530228282,"sender":"s","message":{"a":"';
      const file = `${app.running.config.dataDir}/body-${f}.json`;
      writeFileSync(file, `${head}${'x'.repeat(size - head.length - 3)}"}}`);
      files.set(f, file);
    }
    const first = await app.post('/v1/messages', '{}', { authorization: bearer(limited) });
    assert.equal(first.status, 400, 'the one token of the limited key is spent');
  });
  after(async () => {
    cleanup();
    await app?.close();
  });

  const json = { 'content-type': 'application/json' };
  const refusals = [
    {
      name: '413 by Content-Length',
      status: 413,
      chunked: false,
      headers: () => ({ ...json, authorization: bearer(ingest) }),
    },
    {
      name: '413 counting a chunked body',
      status: 413,
      chunked: true,
      headers: () => ({ ...json, authorization: bearer(ingest) }),
    },
    { name: '401 no key', status: 401, chunked: false, headers: () => json },
    {
      name: '403 key without the scope',
      status: 403,
      chunked: false,
      headers: () => ({ ...json, authorization: bearer(reader) }),
    },
    {
      name: '415 not JSON',
      status: 415,
      chunked: false,
      headers: () => ({ 'content-type': 'text/plain', authorization: bearer(ingest) }),
    },
    {
      name: '429 rate limited',
      status: 429,
      chunked: false,
      headers: () => ({ ...json, authorization: bearer(limited) }),
    },
  ];

  test('each client reads the exact status 20 times out of 20, for every refusal and body size', async (t) => {
    assert.ok(clients.length >= 2);
    const url = `${app.url}/v1/messages`;
    const cells = refusals.flatMap((r) => FACTORS.map((f) => ({ r, f })));
    const uploads: Upload[] = cells.map(({ r, f }) => ({
      url,
      file: files.get(f)!,
      count: TRIES,
      headers: r.headers(),
      chunked: r.chunked,
    }));
    // Two clients at a time (each is its own process; the server serves both).
    const rows = new Map<Client, string[]>();
    const failures: string[] = [];
    const queue = [...clients];
    const worker = async () => {
      for (let client = queue.shift(); client; client = queue.shift()) {
        const started = Date.now();
        const results = await client.run(uploads);
        const row = new Map<string, string[]>();
        cells.forEach(({ r, f }, i) => {
          const { ok, text } = tally(results[i]!, r.status, TRIES);
          if (!ok) failures.push(`${client.name}, ${r.name}, ${f}×: ${text}`);
          row.set(r.name, [...(row.get(r.name) ?? []), text]);
        });
        rows.set(
          client,
          [...row].map(([name, texts]) => `| ${client.name} | ${name} | ${texts.join(' | ')} |`),
        );
        t.diagnostic(`${client.name}: ${Date.now() - started} ms`);
      }
    };
    await Promise.all([worker(), worker()]);
    const table = [`| client | refusal | ${FACTORS.map((f) => `${f}× limit`).join(' | ')} |`];
    table.push(`|---|---|${FACTORS.map(() => '---').join('|')}|`);
    for (const client of clients) table.push(...(rows.get(client) ?? []));
    t.diagnostic(`\n${table.join('\n')}`);
    assert.deepEqual(failures, []);
  });
});
