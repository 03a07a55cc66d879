/**
 * `npm run soak`: intake under steady load for SOAK_SECONDS (600) at SOAK_RPS (500) over SOAK_CONNECTIONS
 * (20), sampling the heap; exits 1 when the heap floor keeps growing (docs/memory-leaks.md). Uses
 * DATABASE_URL, else a scratch database on the local PostgreSQL.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '../harness/db.ts';
import { soak } from '../harness/soak.ts';

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
