import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newMessageId, uuidv7Time } from '../../src/contract/message-id.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('ids are UUIDv7, unique, strictly increasing within the process, and carry the current time', () => {
  const before = Date.now();
  const ids = Array.from({ length: 20_000 }, () => newMessageId());
  const after = Date.now();
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, V7);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} < ${ids[i]}`);
  const t0 = uuidv7Time(ids[0]!).getTime();
  const t1 = uuidv7Time(ids.at(-1)!).getTime();
  assert.ok(t0 >= before && t1 <= after + 1, 'the timestamp is now (a counter overflow may add 1 ms)');
});
