/**
 * What trace context costs with tracing off (docs/tracing.md), side by side in one run:
 *   1. the API's work per request: the request and publish spans of idOnlyTracing and their
 *      `traceparent` strings, without a `traceparent` sent and with one (and a `tracestate`);
 *   2. the worker's store of batches of 1000 messages as it receives them (parsed from the queue's JSON)
 *      with and without a `traceparent`: rows/s and the worker's CPU per row, rounds alternated.
 * CPU time of this process (process.cpuUsage), not wall time: the machine is shared. PostgreSQL's own
 * CPU is not counted (it stores 33 bytes more per row).
 *   node --import tsx scripts/bench-trace.ts [--rows 20000] [--rounds 6]
 */
import { parseArgs } from 'node:util';
import { createTestDatabase } from '../harness/db.ts';
import { queuedMessage } from '../harness/messages.ts';
import type { QueuedMessage } from '../src/contract/queued-message.ts';
import { formatTraceparent, parseTraceContext } from '../src/contract/trace-context.ts';
import { idOnlyTracing } from '../src/ops/tracing.ts';
import type { Delivery } from '../src/queue/queue.ts';
import { ensurePartitions } from '../src/store/partitions.ts';
import { createPool, withTransaction } from '../src/store/pool.ts';
import { storeBatch } from '../src/worker/store-batch.ts';

const { values } = parseArgs({ options: { rows: { type: 'string' }, rounds: { type: 'string' } } });
const rows = Number(values.rows ?? 20_000);
const rounds = Number(values.rounds ?? 6);
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** CPU ns per call of `fn`, median of five runs of `n` calls. */
function cpuNs(n: number, fn: () => unknown): number {
  for (let i = 0; i < 50_000; i++) fn();
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const u = process.cpuUsage(c);
    runs.push(((u.user + u.system) * 1000) / n);
  }
  return median(runs);
}

/** What the HTTP edge and Ingest do per request with tracing off. */
function requestPath(traceparent: string | undefined, tracestate: string | undefined): string {
  const parent = parseTraceContext(traceparent, tracestate);
  const span = idOnlyTracing.startRequest(parent, 'POST /v1/messages', {
    'http.request.method': 'POST',
    'http.route': '/v1/messages',
  });
  const publish = idOnlyTracing.startPublish(span.context, { 'messaging.operation.type': 'send' });
  return formatTraceparent(span.context) + formatTraceparent(publish.context);
}

console.log('| API, per request (tracing off) | CPU ns |\n|---|---|');
console.log(`| no traceparent | ${cpuNs(1e6, () => requestPath(undefined, undefined)).toFixed(0)} |`);
console.log(`| traceparent | ${cpuNs(1e6, () => requestPath(TRACEPARENT, undefined)).toFixed(0)} |`);
console.log(
  `| traceparent + tracestate (2 members) | ${cpuNs(1e6, () => requestPath(TRACEPARENT, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7')).toFixed(0)} |`,
);

const db = await createTestDatabase('benchtrace');
const pool = createPool({ connectionString: db.url, max: 4, applicationName: 'bench', onError: () => {} });
try {
  await ensurePartitions(pool);
  const round = async (traced: boolean) => {
    const batches: Delivery[][] = [];
    for (let done = 0; done < rows; done += 1000) {
      batches.push(
        Array.from({ length: Math.min(1000, rows - done) }, (_, i) => {
          const m: QueuedMessage = queuedMessage(done + i, { withIp: true });
          if (traced) m.traceparent = TRACEPARENT;
          // As the worker gets them: parsed from the queue's JSON.
          return { attempt: 1, message: JSON.parse(JSON.stringify(m)) as QueuedMessage };
        }),
      );
    }
    const c = process.cpuUsage();
    const t = performance.now();
    for (const batch of batches) {
      await withTransaction(pool, (tx) =>
        storeBatch(
          tx,
          batch,
          batch.map(() => true),
          { maxAttempts: 5, backoffMs: () => 0 },
        ),
      );
    }
    const u = process.cpuUsage(c);
    return { rowsPerS: rows / ((performance.now() - t) / 1000), cpuUs: (u.user + u.system) / rows };
  };
  await round(false); // warm-up
  const without: Array<{ rowsPerS: number; cpuUs: number }> = [];
  const traced: Array<{ rowsPerS: number; cpuUs: number }> = [];
  // Alternated, the order swapped every round, so drift in the machine's load hits both.
  for (let r = 0; r < rounds; r++) {
    for (const t of r % 2 ? [true, false] : [false, true]) (t ? traced : without).push(await round(t));
  }
  console.log('\n| worker, batches of 1000 | rows/s (median) | worker CPU µs/row (median, min–max) |');
  console.log('|---|---|---|');
  for (const [name, rs] of [
    ['without traceparent', without],
    ['with traceparent', traced],
  ] as const) {
    const cpu = rs.map((r) => r.cpuUs);
    console.log(
      `| ${name} | ${Math.round(median(rs.map((r) => r.rowsPerS)))} | ${median(cpu).toFixed(2)} (${Math.min(...cpu).toFixed(2)}–${Math.max(...cpu).toFixed(2)}) |`,
    );
  }
} finally {
  await pool.end();
  await db.drop();
}
