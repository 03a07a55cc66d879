/**
 * HTTP ingest benchmark, side by side in one run (ratios, not absolute promises):
 *   1. raw node:http answering 202 (the ceiling on this machine)
 *   2. intake POST /v1/messages on the Postgres queue (group commit)
 *   3. intake POST /v1/messages on NATS JetStream (grouped envelopes), if NATS_URL or nats on 4222
 * Every server runs in its own process (intake as separate `api` and `worker` processes, as in
 * Kubernetes); load comes from autocannon in this process (it shares the cores, as FACTS.md warns).
 *
 *   node --import tsx scripts/bench-http.ts [--seconds 10] [--connections 100]
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { createTestDatabase, waitFor } from '../test/helpers/db.ts';
import { freePort, startIntakeProcess } from '../test/helpers/intake-process.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string' }, connections: { type: 'string' } } });
const duration = Number(values.seconds ?? 10);
const connections = Number(values.connections ?? 100);
const body = JSON.stringify({
  ts: '1530228282',
  sender: 'testy-test-service',
  message: { foo: 'bar', baz: 'bang' },
  'sent-from-ip': '1.2.3.4',
  priority: 2,
});

async function load(url: string): Promise<{ rps: number; p99: number; non2xx: number; errors: number }> {
  const r = await autocannon({
    url: `${url}/v1/messages`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections,
    duration,
  });
  return { rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}

const results: Array<{ name: string; rps: number; p99: number; non2xx: number; errors: number }> = [];

{
  // The ceiling: a bare node:http server answering 202, in its own process like the others.
  const port = await freePort();
  const code = `require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => { s.writeHead(202, {'content-type': 'application/json'}); s.end('{"status":"accepted"}'); }); }).listen(${port}, '127.0.0.1');`;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  try {
    await waitFor(
      'raw server',
      async () => (await fetch(`http://127.0.0.1:${port}/`, { method: 'POST' })).status === 202,
    );
    results.push({ name: 'raw node:http 202', ...(await load(`http://127.0.0.1:${port}`)) });
  } finally {
    child.kill('SIGTERM');
  }
}

async function intake(name: string, env: Record<string, string>) {
  const db = await createTestDatabase('bench');
  const dir = mkdtempSync(join(tmpdir(), 'intake-bench-'));
  const common = { DATABASE_URL: db.url, INTAKE_DATA_DIR: dir, LOG_LEVEL: 'warn', ...env };
  const api = await startIntakeProcess('api', common);
  const worker = await startIntakeProcess('worker', common);
  try {
    results.push({ name, ...(await load(api.url)) });
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    const r = await pool.query(
      'SELECT (SELECT count(*) FROM intake.messages)::int AS stored, (SELECT count(*) FROM intake.queue)::int AS queued',
    );
    await pool.end();
    console.error(
      `${name}: stored ${r.rows[0].stored}, still in the Postgres queue ${r.rows[0].queued} at the end of the run`,
    );
  } finally {
    await api.stop();
    await worker.stop();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await intake('intake, Postgres queue', {});
const nats = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
await intake('intake, NATS JetStream', {
  NATS_URL: nats,
  NATS_STREAM: `BENCH_${process.pid}`,
  NATS_SUBJECT: `bench.${process.pid}`,
  NATS_CONSUMER: `bench-${process.pid}`,
}).catch((err) => console.error(`NATS run skipped: ${(err as Error).message}`));

const base = results[0]!.rps;
console.log(`\n${duration}s per run, ${connections} connections, body ${body.length} bytes\n`);
console.log('| server | req/s | p99 ms | vs raw | non-2xx | errors |\n|---|---|---|---|---|---|');
for (const r of results) {
  console.log(
    `| ${r.name} | ${Math.round(r.rps)} | ${r.p99} | ${((r.rps / base) * 100).toFixed(0)} % | ${r.non2xx} | ${r.errors} |`,
  );
}
