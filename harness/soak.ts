/**
 * Soak test: intake (a real process) under steady load; samples its heap from /metrics every second and
 * fails (exit 1) when the heap floor keeps growing. Run it for hours before a release
 * (`SOAK_SECONDS=7200 npm run soak`); the test suite runs a short version (test/ops/soak.test.ts).
 *
 *   DATABASE_URL=… node --import tsx scripts/soak.ts
 * Env: SOAK_SECONDS (default 600), SOAK_RPS (default 500), SOAK_CONNECTIONS (default 20).
 */
import autocannon from 'autocannon';
import { startIntakeProcess } from './intake-process.ts';
import { analyseHeap, type Sample, type TrendVerdict } from './memory-trend.ts';

export interface SoakResult {
  verdict: TrendVerdict;
  requests: number;
  non2xx: number;
  samples: Sample[];
}

export async function soak(opts: {
  databaseUrl: string;
  dataDir: string;
  seconds: number;
  rps: number;
  connections: number;
  env?: Record<string, string>;
}): Promise<SoakResult> {
  const proc = await startIntakeProcess('start', {
    DATABASE_URL: opts.databaseUrl,
    INTAKE_DATA_DIR: opts.dataDir,
    LOG_LEVEL: 'warn',
    // A small old space makes V8 run full collections often, so the sampled floor is the live set
    // rather than garbage a lazy heap has not collected yet; a real leak then also ends in a heap OOM.
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=96`.trim(),
    ...opts.env,
  });
  const samples: Sample[] = [];
  const t0 = Date.now();
  const sampler = setInterval(async () => {
    try {
      const text = await (await fetch(`${proc.url}/metrics`)).text();
      const m = /^nodejs_heap_size_used_bytes (\d+)/m.exec(text);
      if (m) samples.push({ t: (Date.now() - t0) / 1000, bytes: Number(m[1]) });
    } catch {}
  }, 1000);
  try {
    const r = await autocannon({
      url: `${proc.url}/v1/messages`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ts: 1530228282,
        sender: 'soak',
        message: { foo: 'bar' },
        'sent-from-ip': '1.2.3.4',
      }),
      connections: opts.connections,
      overallRate: opts.rps,
      duration: opts.seconds,
    });
    const verdict = analyseHeap(samples, {
      warmupS: Math.min(15, opts.seconds / 4),
      windowS: Math.max(5, Math.floor(opts.seconds / 12)),
      maxSlope: 20_000, // 20 kB/s ≈ 70 MB/h
      // 16 MiB: a healthy 45 s run on a loaded machine once reached 8.1 MiB; the 16 KiB-a-request leak of
      // test/ops/soak.test.ts grows 33-98 MiB.
      maxGrowth: 16 * 1024 * 1024,
    });
    return { verdict, requests: r.requests.total, non2xx: r.non2xx, samples };
  } finally {
    clearInterval(sampler);
    await proc.stop();
  }
}
