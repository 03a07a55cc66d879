import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { generateKey } from '../../src/auth/api-keys.ts';
import { availableClients, type Client, tally, type Upload } from '../clients/clients.ts';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * The refusals of issue 15 and what drives real clients through them: intake with a 64 KiB body
 * limit (so 64× is 4 MiB, more than loopback socket buffers hold, which is what turns an early close
 * into a reset), keys for each refusal, and bodies of 1.5×, 24× and 64× the limit.
 */
export const LIMIT = 64 * 1024;
export const FACTORS = [1.5, 24, 64];

export interface RefusalCase {
  name: string;
  status: number;
  chunked: boolean;
  headers: Record<string, string>;
}

export interface RefusalMatrix {
  app: TestApp;
  clients: Client[];
  cases: RefusalCase[];
  /**
   * Runs `tries` uploads per client, case and body factor against `url`, two clients at a time;
   * prints the table and returns the cells where a try did not read the expected status.
   */
  run(
    t: TestContext,
    url: string,
    opts: {
      tries: number;
      factors?: number[];
      clients?: Client[];
      expected?: (c: RefusalCase, f: number) => number;
    },
  ): Promise<string[]>;
  close(): Promise<void>;
}

export async function startRefusalMatrix(label: string): Promise<RefusalMatrix> {
  const ingest = generateKey('ingester', ['ingest']);
  const reader = generateKey('reader', ['read']);
  const limited = generateKey('limited', ['ingest']);
  // One token, refilled every ~3 hours: after the first request every one is refused with 429.
  limited.entry.rateLimit = { perSecond: 0.0001, burst: 1 };
  const app = await startTestApp(label, {
    roles: ['api'],
    env: {
      INTAKE_BODY_LIMIT_BYTES: String(LIMIT),
      INTAKE_API_KEYS: JSON.stringify([ingest.entry, reader.entry, limited.entry]),
    },
  });
  const { clients, cleanup } = availableClients();
  const files = new Map<number, string>();
  for (const f of FACTORS) {
    // A JSON message whose only fault is its size.
    const head = '{"ts":1530228282,"sender":"s","message":{"a":"';
    const file = `${app.running.config.dataDir}/body-${f}.json`;
    writeFileSync(file, `${head}${'x'.repeat(Math.round(LIMIT * f) - head.length - 3)}"}}`);
    files.set(f, file);
  }
  const bearer = (k: { key: string }) => `Bearer ${k.key}`;
  const first = await app.post('/v1/messages', '{}', { authorization: bearer(limited) });
  assert.equal(first.status, 400, 'the one token of the limited key is spent');

  const json = { 'content-type': 'application/json' };
  const cases: RefusalCase[] = [
    {
      name: '413 by Content-Length',
      status: 413,
      chunked: false,
      headers: { ...json, authorization: bearer(ingest) },
    },
    {
      name: '413 counting a chunked body',
      status: 413,
      chunked: true,
      headers: { ...json, authorization: bearer(ingest) },
    },
    { name: '401 no key', status: 401, chunked: false, headers: json },
    {
      name: '403 key without the scope',
      status: 403,
      chunked: false,
      headers: { ...json, authorization: bearer(reader) },
    },
    {
      name: '415 not JSON',
      status: 415,
      chunked: false,
      headers: { 'content-type': 'text/plain', authorization: bearer(ingest) },
    },
    {
      name: '429 rate limited',
      status: 429,
      chunked: false,
      headers: { ...json, authorization: bearer(limited) },
    },
  ];

  return {
    app,
    clients,
    cases,
    async run(t, url, opts) {
      const factors = opts.factors ?? FACTORS;
      const expected = opts.expected ?? ((c) => c.status);
      const cells = cases.flatMap((c) => factors.map((f) => ({ c, f })));
      const uploads: Upload[] = cells.map(({ c, f }) => ({
        url,
        file: files.get(f)!,
        count: opts.tries,
        headers: c.headers,
        chunked: c.chunked,
      }));
      const rows = new Map<Client, string[]>();
      const failures: string[] = [];
      const queue = [...(opts.clients ?? clients)];
      // Two clients at a time (each its own process; the server serves both).
      const worker = async () => {
        for (let client = queue.shift(); client; client = queue.shift()) {
          const started = Date.now();
          const results = await client.run(uploads);
          const row = new Map<string, string[]>();
          cells.forEach(({ c, f }, i) => {
            const { ok, text } = tally(results[i]!, expected(c, f), opts.tries);
            if (!ok) failures.push(`${client.name}, ${c.name}, ${f}×: ${text}`);
            row.set(c.name, [...(row.get(c.name) ?? []), text]);
          });
          rows.set(
            client,
            [...row].map(([name, texts]) => `| ${client.name} | ${name} | ${texts.join(' | ')} |`),
          );
          t.diagnostic(`${client.name}: ${Date.now() - started} ms`);
        }
      };
      await Promise.all([worker(), worker()]);
      const table = [`| client | refusal | ${factors.map((f) => `${f}× limit`).join(' | ')} |`];
      table.push(`|---|---|${factors.map(() => '---').join('|')}|`);
      for (const client of opts.clients ?? clients) table.push(...(rows.get(client) ?? []));
      t.diagnostic(`\n${table.join('\n')}`);
      return failures;
    },
    async close() {
      cleanup();
      await app.close();
    },
  };
}
