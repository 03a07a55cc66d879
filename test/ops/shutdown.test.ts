import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { quietLog } from '../../harness/db.ts';
import { ExitCode, exitFor } from '../../src/ops/process-exit.ts';
import { Shutdown } from '../../src/ops/shutdown.ts';

const never = () => new Promise<void>(() => {});

describe('Shutdown: staged, bounded by one deadline', () => {
  test('runs the steps in order and reports a clean outcome; run() twice is one shutdown', async () => {
    const s = new Shutdown(quietLog, 1000);
    const ran: string[] = [];
    const seen: number[] = [];
    s.onStep = (i) => seen.push(i);
    for (const name of ['a', 'b', 'c']) s.add(name, async () => void ran.push(name));
    const first = s.run('test');
    assert.equal(s.run('again'), first);
    const outcome = await first;
    assert.deepEqual(ran, ['a', 'b', 'c']);
    assert.deepEqual(seen, [0, 1, 2]);
    assert.equal(outcome.reason, 'test');
    assert.equal(outcome.abandoned, undefined);
    assert.deepEqual([outcome.skipped, outcome.failed, outcome.aborted], [[], [], false]);
  });

  test('a step that never ends is abandoned at the deadline and the steps after it are skipped', async () => {
    const s = new Shutdown(quietLog, 300);
    let lastRan = false;
    s.add('quick', async () => {});
    s.add('hangs', never);
    s.add('last', async () => {
      lastRan = true;
    });
    const t0 = Date.now();
    const outcome = await s.run('test');
    const ms = Date.now() - t0;
    assert.ok(ms >= 290 && ms < 2000, `ended at the deadline (${ms} ms)`);
    assert.equal(outcome.abandoned, 'hangs');
    assert.deepEqual(outcome.skipped, ['last']);
    assert.equal(lastRan, false);
  });

  test('a step that timed out ends the run even when the wall clock lags the timer', async (t) => {
    // Timers and Date.now() round differently: a timer can fire a millisecond before the clock shows the
    // deadline. A frozen clock is the extreme case; the step after the abandoned one must still be skipped.
    const frozen = Date.now();
    t.mock.method(Date, 'now', () => frozen);
    const s = new Shutdown(quietLog, 100);
    let lastRan = false;
    s.add('hangs', never);
    s.add('last', async () => {
      lastRan = true;
    });
    const outcome = await s.run('test');
    assert.equal(outcome.abandoned, 'hangs');
    assert.deepEqual(outcome.skipped, ['last']);
    assert.equal(lastRan, false);
  });

  test('a step that throws (even synchronously) fails, and the next steps still run', async () => {
    const s = new Shutdown(quietLog, 1000);
    let after = false;
    s.add('throws', () => {
      throw new Error('boom');
    });
    s.add('rejects', async () => {
      throw new Error('boom');
    });
    s.add('after', async () => {
      after = true;
    });
    const outcome = await s.run('test');
    assert.deepEqual(outcome.failed, ['throws', 'rejects']);
    assert.equal(after, true);
    assert.equal(outcome.abandoned, undefined);
  });

  test('abort() abandons the step in progress, skips the rest, but runs the evenIfAborted steps', async () => {
    const s = new Shutdown(quietLog, 5000);
    let cleaned = false;
    let started!: () => void;
    const inDrain = new Promise<void>((r) => {
      started = r;
    });
    s.add('drain', () => {
      started();
      return never();
    });
    s.add('flush', async () => {});
    s.add(
      'stop database',
      async () => {
        cleaned = true;
      },
      { evenIfAborted: true },
    );
    const run = s.run('SIGTERM');
    await inDrain;
    const t0 = Date.now();
    s.abort();
    const outcome = await run;
    assert.ok(Date.now() - t0 < 1000, 'the abort did not wait for the deadline');
    assert.equal(outcome.aborted, true);
    assert.equal(outcome.abandoned, 'drain');
    assert.deepEqual(outcome.skipped, ['flush']);
    assert.equal(cleaned, true, 'the evenIfAborted step ran');
  });

  test('releases run after the steps, last registered first, whenever each was registered', async () => {
    const s = new Shutdown(quietLog, 1000);
    const ran: string[] = [];
    const seen: number[] = [];
    s.onStep = (i) => seen.push(i);
    const step = (name: string) => async () => void ran.push(name);
    s.release('database', step('database'));
    s.release('queue', step('queue'));
    s.add('readiness off', step('readiness off'));
    s.release('http', step('http'));
    s.add('delay', step('delay'));
    const order = ['readiness off', 'delay', 'http', 'queue', 'database'];
    assert.deepEqual(s.stepNames, order, 'stepNames (the watchdog names steps by these indexes)');
    await s.run('test');
    assert.deepEqual(ran, order);
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
  });

  test('abort() skips the releases too, except those marked evenIfAborted', async () => {
    const s = new Shutdown(quietLog, 5000);
    const ran: string[] = [];
    s.release('embedded database', async () => void ran.push('embedded database'), { evenIfAborted: true });
    s.release('pool', async () => void ran.push('pool'));
    s.release('http', never);
    const run = s.run('SIGTERM');
    s.abort();
    const outcome = await run;
    assert.equal(outcome.abandoned, 'http');
    assert.deepEqual(outcome.skipped, ['pool']);
    assert.deepEqual(ran, ['embedded database']);
  });
});

describe('exitFor: the exit code and stderr line of an outcome', () => {
  const base = { reason: 'SIGTERM', skipped: [], failed: [], aborted: false, ms: 10 };
  test('complete: the caller’s code, no line', () => {
    assert.deepEqual(exitFor(base, 0, undefined, 1000, 'intake'), { code: 0 });
    assert.deepEqual(exitFor(base, 1, undefined, 1000, 'pod-watcher'), { code: 1 });
  });
  test('a failed step turns a 0 into 1', () => {
    assert.deepEqual(exitFor({ ...base, failed: ['worker'] }, 0, undefined, 1000, 'intake'), {
      code: ExitCode.failure,
    });
  });
  test('past the deadline: 70 and one line naming the abandoned and skipped steps', () => {
    const r = exitFor(
      { ...base, abandoned: 'worker', skipped: ['database pool'] },
      0,
      undefined,
      25_000,
      'intake',
    );
    assert.equal(r.code, 70);
    assert.equal(
      r.line,
      'intake: shutdown passed its 25000 ms deadline: abandoned step "worker"; skipped "database pool"; exit code 70',
    );
    assert.ok(!r.line?.includes('\n'), 'one line');
  });
  test('aborted by a second signal: 128 + that signal', () => {
    const r = exitFor(
      { ...base, aborted: true, abandoned: 'http server', skipped: ['worker'] },
      0,
      130,
      1000,
      'intake',
    );
    assert.deepEqual(r, { code: 130 });
  });
});
