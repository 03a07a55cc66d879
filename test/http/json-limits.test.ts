import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jsonTooComplex, measureJson } from '../../src/http/json-limits.ts';

const shape = (text: string) => measureJson(Buffer.from(text));

describe('JSON shape pre-check', () => {
  test('counts objects and arrays and the fields of the largest object, ignoring strings', () => {
    assert.deepEqual(shape('{"a":{"b":1,"c":[1,{"d":2}]},"e":"{[:]}","f\\\\":"x\\"{"}'), {
      containers: 4,
      maxFields: 3,
    });
    assert.deepEqual(shape('[]'), { containers: 1, maxFields: 0 });
    assert.deepEqual(shape('"{{{:::"'), { containers: 0, maxFields: 0 });
  });

  test('refuses what would stall JSON.parse, accepts ordinary big bodies', () => {
    assert.match(
      jsonTooComplex(Buffer.from(`[${Array(100_001).fill('{}').join(',')}]`)) ?? '',
      /objects and arrays/,
    );
    const wide = `{${Array.from({ length: 10_001 }, (_, i) => `"k${i}":1`).join(',')}}`;
    assert.match(jsonTooComplex(Buffer.from(wide)) ?? '', /10000 fields/);
    const ordinary = JSON.stringify({
      messages: Array.from({ length: 1000 }, (_, i) => ({
        ts: i,
        sender: 's',
        message: { a: { b: [1, 2, 3] } },
      })),
    });
    assert.equal(jsonTooComplex(Buffer.from(ordinary)), undefined);
  });

  test('malformed text never throws (JSON.parse judges it afterwards)', () => {
    for (const t of ['}}}]]]', '{"a":', '"unterminated', '\\', ':::', '{:}'])
      assert.doesNotThrow(() => shape(t));
  });
});
