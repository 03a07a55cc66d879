import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { createTestDatabase } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { queuedMessage } from '../../harness/messages.ts';
import type { QueuedMessage } from '../../src/contract/queued-message.ts';
import { type LoadResult, runLoad } from './load.ts';
import { CpuMeter } from './proc.ts';

/** The ceiling: a bare node:http server answering 202 in its own process, and its CPU per request. */
export async function rawHttp(
  body: string,
  connections: number,
  seconds: number,
): Promise<LoadResult & { cpuUsPerRequest: number }> {
  const port = await freePort();
  const code = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => { s.writeHead(202, {'content-type': 'application/json'}); s.end('{"status":"accepted"}'); }); }).listen(${port}, '127.0.0.1');`;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/`, { method: 'POST' })).status === 202) break;
      } catch (err) {
        if (i > 200) throw err;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const cpu = new CpuMeter([child.pid!]);
    cpu.start();
    const r = await runLoad({
      url: `http://127.0.0.1:${port}/`,
      headers: { 'content-type': 'application/json' },
      bodyBase64: Buffer.from(body).toString('base64'),
      connections,
      seconds,
    });
    return { ...r, cpuUsPerRequest: (cpu.read()[0]! * 1000) / r.ok };
  } finally {
    child.kill('SIGTERM');
  }
}

const COLUMNS = 'id, received_at, ts, sender, message, priority, ip_pseudonym, ip_ciphertext, ip_key_id';

function copyLine(m: QueuedMessage): string {
  // COPY text format: tab-separated, \N for NULL; JSON and base64 here hold no tab, newline or backslash
  // except JSON's own escapes, which are doubled.
  const esc = (s: string) => s.replace(/\\/g, '\\\\');
  const hex = (b64: string) => `\\\\x${Buffer.from(b64, 'base64').toString('hex')}`;
  return `${[
    m.id,
    m.received_at,
    m.ts,
    esc(m.sender),
    esc(JSON.stringify(m.message)),
    m.priority ?? '\\N',
    m.ip ? hex(m.ip.pseudonym) : '\\N',
    m.ip ? hex(m.ip.ciphertext) : '\\N',
    m.ip ? esc(m.ip.key_id) : '\\N',
  ].join('\t')}\n`;
}

/**
 * Store-stage baselines into intake.messages of a fresh database, the same rows the API would queue:
 * raw COPY FROM STDIN of `rows` rows (one statement, the floor of PostgreSQL's cost), and one INSERT per
 * row, each its own transaction (`insertRows` rows, fewer since it is slow).
 */
export async function storeBaselines(
  rows: number,
  insertRows: number,
): Promise<{ copyRowsPerSec: number; insertRowsPerSec: number }> {
  const db = await createTestDatabase('bench_copy');
  const client = new pg.Client({ connectionString: db.url, application_name: 'bench' });
  await client.connect();
  try {
    await client.query('SELECT intake.ensure_partitions(1, 1)');
    const msgs = Array.from({ length: rows }, (_, i) => queuedMessage(i, { withIp: true }));
    const lines = msgs.map(copyLine);
    const t0 = performance.now();
    await pipeline(
      Readable.from(chunks(lines, 1000)),
      client.query(copyFrom(`COPY intake.messages (${COLUMNS}) FROM STDIN`)),
    );
    const copyRowsPerSec = rows / ((performance.now() - t0) / 1000);

    const more = Array.from({ length: insertRows }, (_, i) => queuedMessage(i, { withIp: true }));
    const t1 = performance.now();
    for (const m of more) {
      await client.query(
        `INSERT INTO intake.messages (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, decode($7, 'base64'), decode($8, 'base64'), $9)
         ON CONFLICT DO NOTHING`,
        [
          m.id,
          m.received_at,
          m.ts,
          m.sender,
          JSON.stringify(m.message),
          m.priority,
          m.ip?.pseudonym ?? null,
          m.ip?.ciphertext ?? null,
          m.ip?.key_id ?? null,
        ],
      );
    }
    const insertRowsPerSec = insertRows / ((performance.now() - t1) / 1000);
    return { copyRowsPerSec, insertRowsPerSec };
  } finally {
    await client.end();
    await db.drop();
  }
}

function* chunks(lines: string[], n: number): Generator<string> {
  for (let i = 0; i < lines.length; i += n) yield lines.slice(i, i + n).join('');
}
