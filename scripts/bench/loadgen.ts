/**
 * The load generator, run as its own process so it does not share the event loop of whatever it
 * measures: `node --import tsx scripts/bench/loadgen.ts < spec.json` (a LoadSpec on stdin: a 1 MiB body
 * does not fit in argv) prints one LoadResult JSON.
 */
import autocannon from 'autocannon';
import type { LoadResult, LoadSpec } from './load.ts';

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const spec = JSON.parse(Buffer.concat(chunks).toString()) as LoadSpec;
const r = await autocannon({
  url: spec.url,
  method: 'POST',
  headers: spec.headers,
  body: Buffer.from(spec.bodyBase64, 'base64'),
  connections: spec.connections,
  duration: spec.seconds,
  ...(spec.rate ? { overallRate: spec.rate } : {}),
});
const ok = r['2xx'];
const out: LoadResult = {
  requests: r.requests.total,
  ok,
  non2xx: r.non2xx,
  errors: r.errors + r.timeouts,
  seconds: r.duration,
  rps: ok / r.duration,
  p50: r.latency.p50,
  p99: r.latency.p99,
};
process.stdout.write(`${JSON.stringify(out)}\n`);
