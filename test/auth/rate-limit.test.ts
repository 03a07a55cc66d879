import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TokenBuckets } from '../../src/auth/rate-limit.ts';

describe('token buckets', () => {
  const opts = { perSecond: 10, burst: 20 };
  const clock = () => {
    let t = 0;
    return { now: () => t, advance: (ms: number) => (t += ms) };
  };

  test('a full bucket pays the burst, then refills at the rate', () => {
    const c = clock();
    const b = new TokenBuckets(c.now);
    for (let i = 0; i < 20; i++) assert.ok(b.take('k', opts).allowed);
    const refused = b.take('k', opts);
    assert.equal(refused.allowed, false);
    assert.equal(refused.retryAfterS, 1);
    c.advance(100);
    assert.ok(b.take('k', opts).allowed, 'one token back after 100 ms at 10/s');
    assert.equal(b.take('k', opts).allowed, false);
  });

  test('a cost is charged in full; a cost above the burst is admitted by a full bucket and leaves debt', () => {
    const c = clock();
    const b = new TokenBuckets(c.now);
    assert.ok(b.take('k', opts, 15).allowed);
    assert.equal(b.take('k', opts, 15).allowed, false, '5 tokens cannot pay 15');
    c.advance(1500); // back to 20
    const big = b.take('k', opts, 50);
    assert.ok(big.allowed, 'a full bucket admits a cost above the burst');
    const next = b.take('k', opts);
    assert.equal(next.allowed, false);
    assert.equal(next.retryAfterS, 4, 'debt of 30 plus one token at 10/s');
    c.advance(3100);
    assert.ok(b.take('k', opts).allowed);
  });

  test('clients have separate buckets', () => {
    const b = new TokenBuckets(() => 0);
    assert.equal(b.take('a', opts, 20).allowed, true);
    assert.equal(b.take('a', opts).allowed, false);
    assert.equal(b.take('b', opts).allowed, true);
  });
});
