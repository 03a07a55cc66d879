import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createTestDatabase } from '../../harness/db.ts';
import { analyseHeap, type Sample } from '../../harness/memory-trend.ts';
import { soak } from '../../harness/soak.ts';

const opts = { warmupS: 10, windowS: 10, maxSlope: 20_000, maxGrowth: 8 * 1024 * 1024 };
const MiB = 1024 * 1024;

describe('heap trend analysis', () => {
  test('a steady climb under a sawtooth is a leak', () => {
    const s: Sample[] = Array.from({ length: 120 }, (_, t) => ({
      t,
      bytes: 50 * MiB + t * 200_000 + (t % 7) * 3 * MiB,
    }));
    const v = analyseHeap(s, opts);
    assert.equal(v.growing, true);
    assert.ok(v.slope > 150_000 && v.slope < 250_000, String(v.slope));
  });

  test('a sawtooth around a flat floor is healthy', () => {
    const s: Sample[] = Array.from({ length: 120 }, (_, t) => ({ t, bytes: 50 * MiB + (t % 9) * 4 * MiB }));
    assert.equal(analyseHeap(s, opts).growing, false);
  });

  test('warm-up growth (pools, JIT) is ignored', () => {
    const s: Sample[] = Array.from({ length: 120 }, (_, t) => ({
      t,
      bytes: (t < 10 ? 20 + t * 3 : 50) * MiB + (t % 5) * MiB,
    }));
    assert.equal(analyseHeap(s, opts).growing, false);
  });
});

describe('soak (short): intake under steady load keeps a flat heap', () => {
  test('45 s at 300 req/s', { timeout: 180_000 }, async () => {
    const db = await createTestDatabase('soak');
    const dir = mkdtempSync(join(tmpdir(), 'intake-soak-'));
    try {
      const r = await soak({ databaseUrl: db.url, dataDir: dir, seconds: 45, rps: 300, connections: 10 });
      const mib = (n: number) => (n / MiB).toFixed(1);
      console.log(
        `# soak: ${r.requests} requests, non-2xx ${r.non2xx}, heap floor growth ${mib(r.verdict.growth)} MiB, slope ${(r.verdict.slope / 1024).toFixed(1)} KiB/s`,
      );
      assert.ok(r.samples.length >= 30, 'heap was sampled');
      assert.ok(r.requests > 2000, 'the load ran'); // not a speed check: a loaded machine delivers less
      assert.equal(r.non2xx, 0);
      assert.equal(r.verdict.growing, false, `heap floor grew ${mib(r.verdict.growth)} MiB`);
    } finally {
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the same soak fails on a build that leaks 16 KiB per request', { timeout: 120_000 }, async () => {
    const db = await createTestDatabase('soak_leak');
    const dir = mkdtempSync(join(tmpdir(), 'intake-soak-leak-'));
    const leak = new URL('../fixtures/leak-per-request.mjs', import.meta.url).pathname;
    try {
      const r = await soak({
        databaseUrl: db.url,
        dataDir: dir,
        seconds: 30,
        rps: 300,
        connections: 10,
        // 16 KiB a request: still caught when a loaded machine delivers a third of the 300 req/s (a 4 KiB
        // leak grew only 6.7 MiB in one such run); at the full rate ~140 MiB, inside the 256 MiB heap.
        env: { NODE_OPTIONS: `--import ${leak} --max-old-space-size=256` },
      });
      const mib = (n: number) => (n / MiB).toFixed(1);
      console.log(
        `# soak (leaking build): ${r.requests} requests, heap floor growth ${mib(r.verdict.growth)} MiB, slope ${(r.verdict.slope / 1024).toFixed(1)} KiB/s`,
      );
      assert.equal(r.verdict.growing, true, 'the leak was detected');
    } finally {
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
