/**
 * Store stage benchmark, side by side in one run: rows/s into intake.messages with
 *   1. one INSERT per row (each its own transaction), and
 *   2. the worker's path: storeBatch() of 1000 messages in one transaction (one unnest INSERT).
 *   node --import tsx scripts/bench-store.ts [--rows 20000]
 */
import { parseArgs } from 'node:util';
import { createTestDatabase } from '../harness/db.ts';
import { queuedMessage } from '../harness/messages.ts';
import type { Delivery } from '../src/queue/queue.ts';
import { createPool, withTransaction } from '../src/store/pool.ts';
import { storeBatch } from '../src/worker/store-batch.ts';

const { values } = parseArgs({ options: { rows: { type: 'string' } } });
const rows = Number(values.rows ?? 20_000);
const db = await createTestDatabase('benchstore');
const pool = createPool({ connectionString: db.url, max: 4, applicationName: 'bench', onError: () => {} });

const delivery = (i: number): Delivery => ({ attempt: 1, message: queuedMessage(i, { withIp: true }) });

try {
  const single = Math.min(rows, 5000);
  let t = performance.now();
  for (let i = 0; i < single; i++) {
    const m = delivery(i).message;
    await pool.query(
      `INSERT INTO intake.messages (id, received_at, ts, sender, message, priority) VALUES ($1, $2, $3, $4, $5, $6)`,
      [m.id, m.received_at, m.ts, m.sender, JSON.stringify(m.message), m.priority],
    );
  }
  const perRow = single / ((performance.now() - t) / 1000);

  t = performance.now();
  for (let done = 0; done < rows; done += 1000) {
    const batch = Array.from({ length: Math.min(1000, rows - done) }, (_, i) => delivery(done + i));
    await withTransaction(pool, (tx) =>
      storeBatch(
        tx,
        batch,
        batch.map(() => true),
        { maxAttempts: 5, backoffMs: () => 0 },
      ),
    );
  }
  const batched = rows / ((performance.now() - t) / 1000);
  console.log('| store path | rows/s | vs one INSERT per row |\n|---|---|---|');
  console.log(`| one INSERT per row (autocommit) | ${Math.round(perRow)} | 1.0× |`);
  console.log(
    `| worker batch of 1000 (unnest INSERT, one commit) | ${Math.round(batched)} | ${(batched / perRow).toFixed(1)}× |`,
  );
} finally {
  await pool.end();
  await db.drop();
}
