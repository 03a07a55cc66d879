import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { QueueOverloadedError, QueueUnavailableError } from '../../src/queue/errors.ts';
import { GroupCommit } from '../../src/queue/group-commit.ts';

/** A GroupCommit whose flushes are recorded and finish when the test says so. */
function harness<T>(
  opts: { lingerMs?: number; maxBatch?: number; maxPending?: number; concurrency?: number } = {},
) {
  const flushes: T[][] = [];
  const gates: Array<() => void> = [];
  const gc = new GroupCommit<T, string>({
    lingerMs: opts.lingerMs ?? 5,
    maxBatch: opts.maxBatch ?? 10,
    maxPending: opts.maxPending ?? 100,
    concurrency: opts.concurrency ?? 1,
    weight: (item) => (Array.isArray(item) ? item.length : 1),
    keys: (item) => (typeof item === 'string' && item.startsWith('key:') ? [item] : []),
    flush: async (items) => {
      flushes.push(items);
      await new Promise<void>((r) => gates.push(r));
      return items.map((i) => `done ${JSON.stringify(i)}`);
    },
  });
  const openAll = async () => {
    for (let i = 0; i < 50 && (gates.length || gc.size); i++) {
      for (const g of gates.splice(0)) g();
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { gc, flushes, gates, openAll };
}

describe('GroupCommit', () => {
  test('submissions within the linger share one flush, each gets its own result', async () => {
    const { gc, flushes, openAll } = harness<string>();
    const results = Promise.all(['a', 'b', 'c'].map((x) => gc.submit(x)));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(flushes, [['a', 'b', 'c']]);
    await openAll();
    assert.deepEqual(await results, ['done "a"', 'done "b"', 'done "c"']);
  });

  test('maxBatch bounds a flush by weight; a call heavier than maxBatch still goes, alone and whole', async () => {
    const { gc, flushes, openAll } = harness<number[]>({ maxBatch: 4 });
    const all = Promise.all([gc.submit([1, 2]), gc.submit([3, 4, 5]), gc.submit([6, 7, 8, 9, 10, 11])]);
    await openAll();
    await all;
    assert.deepEqual(flushes, [[[1, 2]], [[3, 4, 5]], [[6, 7, 8, 9, 10, 11]]]);
  });

  test('a key appears once per flush: a second submission with it waits for the next flush', async () => {
    const { gc, flushes, openAll } = harness<string>();
    const all = Promise.all([gc.submit('key:a'), gc.submit('x'), gc.submit('key:a'), gc.submit('key:b')]);
    await openAll();
    await all;
    assert.deepEqual(flushes, [['key:a', 'x', 'key:b'], ['key:a']]);
  });

  test('a deadline that passes before the flush takes the item out: not accepted, never flushed', async () => {
    const { gc, flushes, openAll } = harness<string>({ concurrency: 1, lingerMs: 0 });
    const first = gc.submit('first'); // occupies the only flush slot
    const ac = new AbortController();
    const late = gc.submit('late', ac.signal);
    ac.abort();
    await assert.rejects(late, QueueUnavailableError);
    await openAll();
    await first;
    assert.deepEqual(flushes, [['first']]);
    assert.equal(gc.size, 0);
    await assert.rejects(gc.submit('already', AbortSignal.abort()), QueueUnavailableError);
  });

  test('a deadline that passes after the flush started does not touch the outcome', async () => {
    const { gc, openAll } = harness<string>({ lingerMs: 0 });
    const ac = new AbortController();
    const p = gc.submit('inflight', ac.signal);
    await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await openAll();
    assert.equal(await p, 'done "inflight"');
  });

  test('beyond maxPending (by weight) a submission is refused at once', async () => {
    const { gc, openAll } = harness<number[]>({ maxPending: 5, lingerMs: 50 });
    const ok = gc.submit([1, 2, 3]);
    await assert.rejects(gc.submit([4, 5, 6]), QueueOverloadedError);
    const fits = gc.submit([7, 8]);
    await openAll();
    await Promise.all([ok, fits]);
  });

  test('a failing flush rejects every item of it; idle() waits for everything in flight', async () => {
    const gc = new GroupCommit<string, string>({
      lingerMs: 1,
      maxBatch: 10,
      maxPending: 10,
      concurrency: 2,
      flush: async () => {
        await new Promise((r) => setTimeout(r, 30));
        throw new Error('boom');
      },
    });
    const a = gc.submit('a');
    const b = gc.submit('b');
    let idle = false;
    const waited = gc.idle().then(() => {
      idle = true;
    });
    assert.equal(idle, false);
    await assert.rejects(a, /boom/);
    await assert.rejects(b, /boom/);
    await waited;
    assert.equal(gc.size, 0);
  });
});
