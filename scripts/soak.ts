/**
 * Soak test: intake (a real process) under steady load; samples its heap from /metrics every second and
 * fails (exit 1) when the heap floor keeps growing. Run it for hours before a release
 * (`SOAK_SECONDS=7200 npm run soak`); the test suite runs a short version (test/soak.test.ts).
 *
 *   DATABASE_URL=… node --import tsx scripts/soak.ts
 * Env: SOAK_SECONDS (default 600), SOAK_RPS (default 500), SOAK_CONNECTIONS (default 20).
 */
import autocannon from 'autocannon';
import { startIntakeProcess } from '../test/helpers/intake-process.ts';
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
      maxGrowth: 8 * 1024 * 1024,
    });
    return { verdict, requests: r.requests.total, non2xx: r.non2xx, samples };
  } finally {
    clearInterval(sampler);
    await proc.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { createTestDatabase } = await import('../test/helpers/db.ts');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const db = process.env.DATABASE_URL ? undefined : await createTestDatabase('soak');
  try {
    const r = await soak({
      databaseUrl: process.env.DATABASE_URL ?? db!.url,
      dataDir: mkdtempSync(join(tmpdir(), 'intake-soak-')),
      seconds: Number(process.env.SOAK_SECONDS ?? 600),
      rps: Number(process.env.SOAK_RPS ?? 500),
      connections: Number(process.env.SOAK_CONNECTIONS ?? 20),
    });
    const mib = (n: number) => (n / 1048576).toFixed(1);
    console.log(
      `requests ${r.requests} (non-2xx ${r.non2xx}); heap floor growth ${mib(r.verdict.growth)} MiB, slope ${(r.verdict.slope / 1024).toFixed(1)} KiB/s over ${r.verdict.windows} windows: ${r.verdict.growing ? 'GROWING (leak?)' : 'steady'}`,
    );
    process.exitCode = r.verdict.growing ? 1 : 0;
  } finally {
    await db?.drop();
  }
}
