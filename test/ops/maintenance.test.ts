import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { waitFor } from '../../harness/db.ts';
import { Maintenance } from '../../src/ops/maintenance.ts';
import { createMetrics } from '../../src/ops/metrics.ts';

test('a failing maintenance job is logged with its name and counted, and keeps its schedule', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  const metrics = createMetrics();
  const m = new Maintenance(pino({}, sink), metrics);
  let runs = 0;
  m.every(
    'partitions',
    20,
    async () => {
      runs++;
      throw new Error('permission denied for schema intake');
    },
    { now: true },
  );
  m.every('fine', 20, async () => {});
  await waitFor('three failed runs', () => runs >= 3);
  m.stop();
  const stopped = runs;
  await new Promise((r) => setTimeout(r, 60));
  assert.ok(runs <= stopped + 1, 'stop() ends the schedule');
  const failures = lines.filter((l) => l.task === 'partitions');
  assert.ok(failures.length >= 3);
  assert.equal(failures[0]!.level, 50);
  assert.match(String((failures[0]!.err as { message: string }).message), /permission denied/);
  const text = await metrics.registry.getSingleMetricAsString('intake_maintenance_failures_total');
  const counted = Number(/task="partitions"} (\d+)/.exec(text)?.[1]);
  assert.ok(counted >= 3, text);
  assert.doesNotMatch(text, /task="fine"/);
});
