/**
 * HTTP ingest benchmark, side by side in one run (ratios, not absolute promises):
 *   1. raw node:http answering 202 (the ceiling on this machine)
 *   2. intake POST /v1/messages on the Postgres queue (group commit)
 *   3. intake POST /v1/messages on NATS JetStream (grouped envelopes), if NATS_URL or nats on 4222
 * Load comes from autocannon in this process (it shares the cores, as FACTS.md warns).
 *
 *   node --import tsx scripts/bench-http.ts [--seconds 10] [--connections 100]
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { loadConfig } from '../src/config.ts';
import { startIntake } from '../src/runtime.ts';
import { createTestDatabase, quietLog } from '../test/helpers/db.ts';

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
  const srv = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end('{"status":"accepted"}');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  results.push({ name: 'raw node:http 202', ...(await load(`http://127.0.0.1:${port}`)) });
  await new Promise((r) => srv.close(r));
}

async function intake(name: string, env: Record<string, string>) {
  const db = await createTestDatabase('bench');
  const dir = mkdtempSync(join(tmpdir(), 'intake-bench-'));
  const running = await startIntake(
    loadConfig({ DATABASE_URL: db.url, HOST: '127.0.0.1', PORT: '0', INTAKE_DATA_DIR: dir, ...env }),
    ['api', 'worker'],
    quietLog,
  );
  try {
    results.push({ name, ...(await load(running.url)) });
    const r = await running.pool.query(
      'SELECT (SELECT count(*) FROM intake.messages)::int AS stored, (SELECT count(*) FROM intake.queue)::int AS queued',
    );
    console.error(
      `${name}: stored ${r.rows[0].stored}, still queued ${r.rows[0].queued} at the end of the run`,
    );
  } finally {
    await running.shutdown('bench done');
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
