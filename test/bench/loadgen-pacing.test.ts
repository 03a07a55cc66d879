import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';

/**
 * The bench's fixed-rate load (latency at half the maximum) must arrive evenly, not as autocannon's
 * `overallRate` sends it: each connection's share of a second at full speed, then a pause until the next
 * second. Counted at the server, in quarter-second windows; about speed only in that the machine must
 * keep a 400 req/s pace.
 */
test('a load at a fixed rate arrives evenly spread over each second', async () => {
  const arrivals: number[] = [];
  const server = createServer((req, res) => {
    arrivals.push(performance.now());
    req.resume();
    req.on('end', () => res.writeHead(202).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    const rate = 400;
    // As the bench runs it: its own process, the spec on stdin, one JSON result on stdout.
    const r = await loadgen({
      url: `http://127.0.0.1:${port}/`,
      headers: { 'content-type': 'application/json' },
      bodyBase64: Buffer.from('{}').toString('base64'),
      connections: 50,
      seconds: 3,
      rate,
    });
    assert.equal(r.ok, rate * 3, 'every request planned was sent and answered');
    assert.equal(r.requests, rate * 3);
    assert.ok(r.p50 > 0 && r.p99 >= r.p50, `latencies are reported (${r.p50}, ${r.p99})`);
    const start = arrivals[0]!;
    const windows = new Array(12).fill(0) as number[];
    for (const t of arrivals) windows[Math.min(11, Math.floor((t - start) / 250))]!++;
    // 100 per window when even; a burst-then-pause sender puts ~all of a second's 400 in one of four, so
    // half a second holds 400 or 0. A pause of the loaded machine (seen: 190 ms, windows 24 then 177) only
    // moves requests into the next window, so two adjacent windows are judged together.
    const all = windows.join(', ');
    for (const [i, n] of windows.slice(0, 11).entries())
      assert.ok(n <= 300, `window ${i} (250 ms) got ${n} requests, a burst: ${all}`);
    for (let i = 0; i + 1 < 11; i++) {
      const pair = windows[i]! + windows[i + 1]!;
      assert.ok(pair >= 100 && pair <= 300, `windows ${i}-${i + 1} (500 ms) got ${pair} requests: ${all}`);
    }
  } finally {
    server.close();
  }
});

function loadgen(spec: object): Promise<{ ok: number; requests: number; p50: number; p99: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/bench/loadgen.ts'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`loadgen exited ${code}`)),
    );
    child.stdin.end(JSON.stringify(spec));
  });
}
