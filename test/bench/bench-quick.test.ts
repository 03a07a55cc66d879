import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

/**
 * `npm run bench -- --quick` must keep working: it runs end to end (real intake processes, PostgreSQL,
 * a private nats-server, autocannon in a child process) and reports every figure as a finite number.
 * Nothing here is about speed.
 */
test('the quick bench completes and reports every figure as a finite number', () => {
  const dir = mkdtempSync(join(tmpdir(), 'intake-bench-test-'));
  try {
    const out = join(dir, 'bench.json');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench.ts', '--quick', '--out', out], {
      encoding: 'utf8',
      timeout: 240_000,
    });
    assert.equal(r.status, 0, `bench exited ${r.status}: ${r.stderr.slice(-3000)}`);
    const result = JSON.parse(readFileSync(out, 'utf8')) as {
      summary: Record<string, { median: number; min: number; max: number }>;
      targets: Array<{ target: string; figure: string; median: number }>;
    };
    const expected = [
      'raw.req_per_s',
      'raw.cpu_us_per_req',
      'store.copy.rows_per_s',
      'store.insert_per_row.rows_per_s',
      ...['pg', 'nats'].flatMap((q) => [
        `${q}.ready_ms.api`,
        `${q}.ready_ms.worker`,
        `${q}.single.msgs_per_s`,
        `${q}.single.cpu_us_per_msg.api`,
        `${q}.single.cpu_us_per_msg.worker`,
        `${q}.single.cpu_us_per_msg.postgres`,
        `${q}.batch100.msgs_per_s`,
        `${q}.ndjson_gz100.msgs_per_s`,
        `${q}.half_max.http_p50_ms`,
        `${q}.half_max.http_p99_ms`,
        `${q}.half_max.lag_p50_ms`,
        `${q}.half_max.lag_p99_ms`,
        `${q}.half_max.rss_mb.api`,
        `${q}.half_max.rss_mb.worker`,
        `${q}.drain.rows_per_s`,
        `${q}.drain.cpu_us_per_row.worker`,
      ]),
      'nats.single.cpu_us_per_msg.nats',
      'pg.api_workers_2.single.msgs_per_s',
      'pg.api_workers_2.single.cpu_us_per_msg.api',
      'ratio.pg.api_workers_2_vs_1',
    ];
    for (const name of expected) assert.ok(result.summary[name], `figure ${name} is reported`);
    for (const [name, s] of Object.entries(result.summary)) {
      for (const v of [s.median, s.min, s.max]) assert.ok(Number.isFinite(v), `${name} is finite (got ${v})`);
    }
    assert.equal(result.targets.length, 14, 'every target of the issue, for both queues');
    assert.match(r.stdout, /\| figure \| median \| min–max \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
