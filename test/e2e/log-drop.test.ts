import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { createTestDatabase, type TestDatabase } from '../../harness/db.ts';
import { freePort } from '../../harness/intake-process.ts';
import { LOG_BUFFER_BYTES } from '../../src/ops/logger.ts';
import { WATCHDOG_GRACE_MS } from '../../src/ops/process-exit.ts';
import { type PipedProcess, spawnWithPipes } from '../helpers/controlled-pipe.ts';
import { parseMetrics, sampleValue } from '../pod-watcher/replicas.ts';

/**
 * Issue 13: while stdout takes nothing, `intake api` keeps serving, holds at most its log buffer and drops
 * (and counts) the rest; it still exits 0 within its deadline on SIGTERM and says on stderr what it lost.
 */
const INTAKE = fileURLToPath(new URL('../../bin/intake.js', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 10_000;
const MARGIN_MS = 2500;

let db: TestDatabase | undefined;
let p: PipedProcess | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'intake-log-drop-'));
after(async () => {
  await p?.dispose();
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('intake api, stdout full from the start: serves, drops and counts log lines beyond its buffer, exits 0', async () => {
  db = await createTestDatabase('log_drop');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  p = spawnWithPipes(
    [INTAKE, 'api'],
    {
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: db.url,
      NATS_URL: '',
      INTAKE_DATA_DIR: dataDir,
      INTAKE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    },
    { out: 'full', err: 'read' },
  );
  await p.waitReady(url);
  // One access line per request, each longer than 300 bytes with a 128-character request id: more than
  // the buffer holds, so the logger must drop (and count) rather than hold them all.
  const requests = 20_000;
  const r = await autocannon({
    url: `${url}/livez`,
    connections: 16,
    amount: requests,
    headers: { 'x-request-id': 'r'.repeat(128) },
  });
  assert.equal(r.non2xx + r.errors, 0, 'every request answered while stdout takes nothing');
  const metrics = parseMetrics(await (await fetch(`${url}/metrics`)).text());
  const dropped = sampleValue(metrics, 'intake_log_lines_dropped_total');
  const heldAtMost = Math.floor(LOG_BUFFER_BYTES / 300);
  assert.ok(
    dropped >= requests - heldAtMost,
    `${dropped} lines dropped of ${requests}: the buffer holds at most ${heldAtMost}`,
  );
  const rssMb = sampleValue(metrics, 'process_resident_memory_bytes') / 2 ** 20;
  console.log(`# ${requests} requests: ${dropped} log lines dropped, RSS ${rssMb.toFixed(0)} MiB`);

  const t0 = Date.now();
  p.child.kill('SIGTERM');
  const exit = await p.exitWithin(SHUTDOWN_TIMEOUT_MS + WATCHDOG_GRACE_MS + MARGIN_MS);
  assert.ok(exit, `still running ${Date.now() - t0} ms after SIGTERM`);
  assert.deepEqual(exit, { code: 0, signal: null }, p.err.text());
  assert.match(p.err.text(), /^intake: \d+ log lines dropped: stdout did not take them in time$/m);
});
