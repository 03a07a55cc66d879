/**
 * The load generator, run as its own process so it does not share the event loop of whatever it
 * measures: `node --import tsx scripts/bench/loadgen.ts < spec.json` (a LoadSpec on stdin: a 1 MiB body
 * does not fit in argv) prints one LoadResult JSON.
 *
 * As fast as it can: autocannon. At a fixed rate: paced() below, not autocannon's `overallRate`, which
 * lets each connection send its share of a second as fast as it can and then pause until the next
 * second (node_modules/autocannon/lib/httpClient.js, reqsMadeThisSecond), so "half the maximum rate"
 * arrives as full-speed bursts half of each second, and which records every response slower than 1 ms
 * with synthetic coordinated-omission samples (recordValueWithExpectedInterval with an interval of
 * ceil(1/rate) ms). Latency at a rate measured that way is the queue of a burst, not the server's.
 */
import { Agent, request } from 'node:http';
import autocannon from 'autocannon';
import type { LoadResult, LoadSpec } from './load.ts';

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const spec = JSON.parse(Buffer.concat(chunks).toString()) as LoadSpec;
const out = spec.rate ? await paced(spec, spec.rate) : await flatOut(spec);
process.stdout.write(`${JSON.stringify(out)}\n`);

async function flatOut(spec: LoadSpec): Promise<LoadResult> {
  const r = await autocannon({
    url: spec.url,
    method: 'POST',
    headers: spec.headers,
    body: Buffer.from(spec.bodyBase64, 'base64'),
    connections: spec.connections,
    duration: spec.seconds,
  });
  const ok = r['2xx'];
  return {
    requests: r.requests.total,
    ok,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    seconds: r.duration,
    rps: ok / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
  };
}

/**
 * Open loop at `rate` requests/s, evenly spaced (the wrk2 method): request i is due at start + i/rate
 * and its latency is counted from then, so time spent waiting for one of the `connections` keep-alive
 * sockets counts too (no coordinated omission). Hand-written because no load generator on npm paces
 * this way; it uses node:http's client and Agent for the requests themselves.
 */
async function paced(spec: LoadSpec, rate: number): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections });
  const url = new URL(spec.url);
  const body = Buffer.from(spec.bodyBase64, 'base64');
  const headers = { ...spec.headers, 'content-length': String(body.length) };
  // At least one request: with none planned, nothing would ever settle and the run would not end.
  const total = Math.max(1, Math.round(rate * spec.seconds));
  const latencies: number[] = [];
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let settled = 0;
  let allSettled: () => void = () => {};
  const done = new Promise<void>((r) => {
    allSettled = r;
  });
  const settle = () => {
    if (++settled === total) allSettled();
  };
  const send = (due: number) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers },
      (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            ok++;
            if (due >= warm) latencies.push(performance.now() - due);
          } else non2xx++;
          settle();
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      errors++;
      settle();
    });
    req.end(body);
  };
  const start = performance.now();
  // The first second opens the connections and warms this process's JIT; its latencies are not counted.
  const warm = start + Math.min(1000, (spec.seconds * 1000) / 4);
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (issued < due) send(start + (issued++ * 1000) / rate);
      if (issued < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await done;
  const seconds = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return {
    requests: total,
    ok,
    non2xx,
    errors,
    seconds,
    rps: ok / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
  };
}
