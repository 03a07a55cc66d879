import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { raceUntil } from '../../src/queue/race-until.ts';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const later = <T>(ms: number, v: T) => new Promise<T>((r) => setTimeout(() => r(v), ms));

test('raceUntil: the value when the promise wins, and no timer is left behind', async () => {
  const before = timers();
  assert.equal(await raceUntil(Promise.resolve(7), Date.now() + 60_000), 7);
  assert.equal(await raceUntil(later(10, 'x'), Date.now() + 60_000), 'x');
  assert.equal(timers(), before);
});

test('raceUntil: undefined at the deadline; the promise keeps running', async () => {
  let finished = false;
  const slow = later(150, 'late').then((v) => {
    finished = true;
    return v;
  });
  const t0 = Date.now();
  assert.equal(await raceUntil(slow, t0 + 30), undefined);
  assert.ok(Date.now() - t0 >= 25, 'not before the deadline');
  assert.equal(finished, false);
  assert.equal(await slow, 'late');
  assert.equal(await raceUntil(slow, Date.now() - 1), undefined, 'a deadline already past');
});

test('raceUntil: undefined when the signal aborts, before or during; the listener is removed', async () => {
  const ac = new AbortController();
  const pending = raceUntil(new Promise(() => {}), Number.POSITIVE_INFINITY, ac.signal);
  setTimeout(() => ac.abort(), 10);
  assert.equal(await pending, undefined);
  assert.equal(await raceUntil(Promise.resolve(1), Date.now() + 1000, ac.signal), undefined);

  const kept = new AbortController();
  for (let i = 0; i < 50; i++) await raceUntil(Promise.resolve(i), Date.now() + 1000, kept.signal);
  await raceUntil(later(50, 0), Date.now() + 10, kept.signal);
  assert.equal(getEventListeners(kept.signal, 'abort').length, 0, 'every call removed its listener');
});

test('raceUntil: a rejection of the promise is passed on; Infinity waits for the promise', async () => {
  await assert.rejects(raceUntil(Promise.reject(new Error('boom')), Date.now() + 1000), /boom/);
  assert.equal(await raceUntil(later(20, 'y'), Number.POSITIVE_INFINITY), 'y');
});
