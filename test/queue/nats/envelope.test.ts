import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QueuedMessage } from '../../../src/contract/queued-message.ts';
import {
  decodeEnvelope,
  encodeEnvelope,
  envelopeMsgId,
  splitBySize,
} from '../../../src/queue/nats/envelope.ts';

/** The on-stream format (docs/queue-format.md) without a server. */
const msg = (id: string): QueuedMessage => ({
  v: 1,
  id,
  received_at: '2026-01-01T00:00:00.000Z',
  ts: 1,
  sender: 's',
  message: { a: 1 },
  priority: null,
});
const ID1 = '01940000-0000-7000-8000-000000000001';
const ID2 = '01940000-0000-7000-8000-000000000002';

test('an envelope round-trips and a bare message reads as a group of one', () => {
  const text = encodeEnvelope([msg(ID1), msg(ID2)].map((m) => JSON.stringify(m)));
  assert.deepEqual(JSON.parse(text), { v: 1, messages: [msg(ID1), msg(ID2)] });
  assert.deepEqual(decodeEnvelope(Buffer.from(text)), { messages: [msg(ID1), msg(ID2)], invalid: 0 });
  assert.deepEqual(decodeEnvelope(Buffer.from(JSON.stringify(msg(ID1)))), {
    messages: [msg(ID1)],
    invalid: 0,
  });
});

test('entries that cannot be stored or dead-lettered are counted, not returned', () => {
  assert.deepEqual(decodeEnvelope(Buffer.from('not json')), { messages: [], invalid: 1 });
  assert.deepEqual(decodeEnvelope(Buffer.from('{"v":2,"messages":[]}')), { messages: [], invalid: 1 });
  const mixed = { v: 1, messages: [msg(ID1), { ...msg(ID2), id: 'nope' }, null] };
  assert.deepEqual(decodeEnvelope(Buffer.from(JSON.stringify(mixed))), { messages: [msg(ID1)], invalid: 2 });
});

test('the group id depends on the ids and their order only', () => {
  assert.equal(envelopeMsgId([ID1, ID2]), envelopeMsgId([ID1, ID2]));
  assert.notEqual(envelopeMsgId([ID1, ID2]), envelopeMsgId([ID2, ID1]));
  assert.notEqual(envelopeMsgId([ID1]), envelopeMsgId([ID1, ID2]));
});

test('groups are split to fit max_payload; a message too large alone is singled out', () => {
  const frame = encodeEnvelope([]).length;
  assert.deepEqual(splitBySize([10, 10, 10], 1000), { ranges: [[0, 3]], tooLarge: [] });
  // Room for two 10-byte messages (plus commas) per envelope.
  assert.deepEqual(splitBySize([10, 10, 10], frame + 22), {
    ranges: [
      [0, 2],
      [2, 3],
    ],
    tooLarge: [],
  });
  assert.deepEqual(splitBySize([10, 5000, 10], 1000), {
    ranges: [
      [0, 1],
      [2, 3],
    ],
    tooLarge: [1],
  });
  for (const [start, end] of splitBySize([300, 300, 300, 300], 700).ranges) {
    const text = encodeEnvelope(Array.from({ length: end - start }, () => 'x'.repeat(300)));
    assert.ok(text.length <= 700, `envelope of ${text.length} bytes`);
  }
});
