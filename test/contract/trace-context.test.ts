import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatTraceparent, parseTraceContext, parseTraceState } from '../../src/contract/trace-context.ts';

/**
 * Cases from the W3C Trace Context recommendation and its test suite (w3c/trace-context test/test.py):
 * what a vendor must take as the parent, and what it must ignore and start a new trace for.
 */
const TRACE = '12345678901234567890123456789012';
const SPAN = '1234567890123456';
const VALID = `00-${TRACE}-${SPAN}-01`;

describe('traceparent', () => {
  test('the recommendation example is read: ids, sampled flag', () => {
    assert.deepEqual(parseTraceContext('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      sampled: true,
    });
    assert.equal(
      parseTraceContext('00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00')?.sampled,
      false,
    );
  });

  test('only the sampled bit of the flags counts; other bits are ignored, not refused', () => {
    assert.equal(parseTraceContext(`00-${TRACE}-${SPAN}-03`)?.sampled, true);
    assert.equal(parseTraceContext(`00-${TRACE}-${SPAN}-fe`)?.sampled, false);
  });

  test('optional whitespace around the value is ignored', () => {
    for (const v of [` ${VALID}`, `\t${VALID}`, `${VALID} `, `${VALID}\t`, `\t ${VALID} \t`])
      assert.equal(parseTraceContext(v)?.traceId, TRACE, JSON.stringify(v));
  });

  const invalid: Record<string, string> = {
    'version 00 with trailing characters': `${VALID}.`,
    'version 00 with a future field': `${VALID}-what-the-future-will-be-like`,
    'version ff': `ff-${TRACE}-${SPAN}-01`,
    'version with illegal characters': `.0-${TRACE}-${SPAN}-01`,
    'version with illegal second character': `0.-${TRACE}-${SPAN}-01`,
    'version too long': `000-${TRACE}-${SPAN}-01`,
    'version much too long': `0000-${TRACE}-${SPAN}-01`,
    'version too short': `0-${TRACE}-${SPAN}-01`,
    'trace-id all zero': `00-${'0'.repeat(32)}-${SPAN}-01`,
    'trace-id with illegal character at start': `00-.${TRACE.slice(1)}-${SPAN}-01`,
    'trace-id with illegal character at end': `00-${TRACE.slice(0, 31)}.-${SPAN}-01`,
    'trace-id too long': `00-${TRACE}3-${SPAN}-01`,
    'trace-id too short': `00-${TRACE.slice(0, 31)}-${SPAN}-01`,
    'parent-id all zero': `00-${TRACE}-${'0'.repeat(16)}-01`,
    'parent-id with illegal character': `00-${TRACE}-.${SPAN.slice(1)}-01`,
    'parent-id too long': `00-${TRACE}-${SPAN}7-01`,
    'parent-id too short': `00-${TRACE}-${SPAN.slice(0, 15)}-01`,
    'flags with illegal character': `00-${TRACE}-${SPAN}-.0`,
    'flags with illegal second character': `00-${TRACE}-${SPAN}-0.`,
    'flags too long': `00-${TRACE}-${SPAN}-001`,
    'flags too short': `00-${TRACE}-${SPAN}-1`,
    'uppercase trace-id': `00-${'ABCDEF'.padEnd(32, '1')}-${SPAN}-01`,
    'uppercase parent-id': `00-${TRACE}-${'ABCDEF'.padEnd(16, '1')}-01`,
    'uppercase version': `0A-${TRACE}-${SPAN}-01`,
    'uppercase flags': `00-${TRACE}-${SPAN}-0A`,
    'two headers joined by the HTTP layer': `${VALID}, 00-${TRACE.replace('1', '9')}-${SPAN}-01`,
    'two headers, the first of a future version with a field': `cc-${TRACE}-${SPAN}-01-x, ${VALID}`,
    'two future-version headers joined': `cc-${TRACE}-${SPAN}-01-x,cc-${TRACE}-${SPAN}-01`,
    'future version shorter than 55 characters': `cc-${TRACE}-${SPAN}-1`,
    'future version with a non-dash after the flags': `cc-${TRACE}-${SPAN}-01.what-the-future-will-be-like`,
    'empty value': '',
    'not a traceparent at all': 'hello',
  };
  for (const [what, value] of Object.entries(invalid)) {
    test(`invalid, so ignored: ${what}`, () => {
      assert.equal(parseTraceContext(value, 'foo=1'), undefined);
    });
  }

  test('a future version is read by its first 55 characters (forward compatibility)', () => {
    assert.deepEqual(parseTraceContext(`cc-${TRACE}-${SPAN}-01`), {
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
    });
    assert.equal(parseTraceContext(`cc-${TRACE}-${SPAN}-01-what-the-future-will-be-like`)?.traceId, TRACE);
    assert.equal(parseTraceContext(`01-${TRACE}-${SPAN}-00-x`)?.sampled, false);
    // Its own rules for ids still hold: all zero and uppercase stay invalid.
    assert.equal(parseTraceContext(`cc-${'0'.repeat(32)}-${SPAN}-01`), undefined);
    assert.equal(parseTraceContext(`cc-${'ABCDEF'.padEnd(32, '1')}-${SPAN}-01`), undefined);
  });

  test('missing or given twice (an array) is no parent', () => {
    assert.equal(parseTraceContext(undefined), undefined);
    assert.equal(parseTraceContext([VALID, VALID]), undefined);
  });

  test('formatted back as version 00, whatever version came in', () => {
    const ctx = parseTraceContext(`cc-${TRACE}-${SPAN}-03-more`)!;
    assert.equal(formatTraceparent(ctx), `00-${TRACE}-${SPAN}-01`);
    assert.equal(
      formatTraceparent({ traceId: TRACE, spanId: SPAN, sampled: false }),
      `00-${TRACE}-${SPAN}-00`,
    );
    assert.deepEqual(parseTraceContext(formatTraceparent(ctx)), {
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
    });
  });
});

describe('tracestate', () => {
  const withState = (state: string | string[] | undefined) => parseTraceContext(VALID, state)?.traceState;

  test('kept only with a valid traceparent', () => {
    assert.equal(withState('foo=1,bar=2'), 'foo=1,bar=2');
    assert.equal(parseTraceContext(undefined, 'foo=1'), undefined);
    assert.equal(parseTraceContext(`ff-${TRACE}-${SPAN}-01`, 'foo=1'), undefined);
  });

  test('an invalid tracestate is dropped, the traceparent still counts', () => {
    const ctx = parseTraceContext(VALID, 'FOO=1');
    assert.equal(ctx?.traceId, TRACE);
    assert.equal(ctx?.traceState, undefined);
    assert.equal('traceState' in ctx!, false);
  });

  test('the recommendation example, and several header lines combined in order', () => {
    assert.equal(
      withState('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'),
      'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    );
    assert.equal(withState(['foo=1,bar=2', 'rojo=1,congo=2', 'baz=3']), 'foo=1,bar=2,rojo=1,congo=2,baz=3');
  });

  test('empty headers and empty members are accepted and dropped', () => {
    assert.equal(withState(''), undefined);
    assert.equal(withState(['foo=1', '']), 'foo=1');
    assert.equal(withState(['', 'foo=1']), 'foo=1');
    assert.equal(withState('foo=1,, ,\t,bar=2'), 'foo=1,bar=2');
    assert.equal(withState(' , '), undefined);
  });

  test('optional whitespace around members is dropped; spaces inside a value are kept', () => {
    assert.equal(withState('foo=1 \t , \t bar=2, \t baz=3'), 'foo=1,bar=2,baz=3');
    assert.equal(withState('foo=1\t \t,\t \tbar=2,\t \tbaz=3'), 'foo=1,bar=2,baz=3');
    for (const v of [' foo=1', '\tfoo=1', 'foo=1 ', 'foo=1\t', '\t foo=1 \t'])
      assert.equal(withState(v), 'foo=1');
    assert.equal(withState('foo= a b'), 'foo= a b');
  });

  test('every allowed character is kept', () => {
    const key = `abcdefghijklmnopqrstuvwxyz0123456789_-*/`;
    let value = '';
    for (let c = 0x20; c <= 0x7e; c++) if (c !== 0x2c && c !== 0x3d) value += String.fromCharCode(c);
    assert.equal(withState(`${key}=${value}`), `${key}=${value}`);
    assert.equal(withState(`${key}@a-z0-9_-*/=${value}`), `${key}@a-z0-9_-*/=${value}`);
  });

  test('keys: at signs after the first character, a digit first, at most 256 characters', () => {
    assert.equal(withState('foo@=1,bar=2'), 'foo@=1,bar=2');
    assert.equal(withState('foo@@bar=1,bar=2'), 'foo@@bar=1,bar=2');
    assert.equal(withState('foo@bar@baz=1,bar=2'), 'foo@bar@baz=1,bar=2');
    assert.equal(withState('1vendor=1'), '1vendor=1');
    assert.equal(withState(`${'z'.repeat(256)}=1`), `${'z'.repeat(256)}=1`);
    assert.equal(withState(`t@${'v'.repeat(15)}=1`), `t@${'v'.repeat(15)}=1`);
  });

  const invalidLists: Record<string, string | string[]> = {
    'a key with a space before =': 'foo =1',
    'an uppercase key': 'FOO=1',
    'a dot in a key': 'foo.bar=1',
    'a key starting with @': '@foo=1,bar=2',
    'a key of 257 characters': ['foo=1', `${'z'.repeat(257)}=1`],
    'an = in a value': 'foo=bar=baz',
    'an empty value': 'foo=,bar=3',
    'a value of 257 characters': `foo=${'v'.repeat(257)}`,
    'a control character in a value': 'foo=a\u0001b',
    'a non-ASCII value': 'foo=é',
    'a member without =': 'foo,bar=2',
    '33 members': Array.from({ length: 33 }, (_, i) => `bar${String(i + 1).padStart(2, '0')}=1`).join(','),
  };
  for (const [what, state] of Object.entries(invalidLists)) {
    test(`the whole list is discarded for ${what}`, () => {
      assert.equal(withState(state), undefined);
    });
  }

  test('32 members over several header lines are kept', () => {
    const members = Array.from({ length: 32 }, (_, i) => `bar${String(i + 1).padStart(2, '0')}=${i}`);
    const lines = [members.slice(0, 10), members.slice(10, 20), members.slice(20, 30), members.slice(30)];
    assert.equal(withState(lines.map((l) => l.join(','))), members.join(','));
  });

  test('a key given again keeps its leftmost member', () => {
    assert.equal(withState('foo=1,foo=1'), 'foo=1');
    assert.equal(withState('foo=1,foo=2'), 'foo=1');
    assert.equal(withState(['foo=2', 'bar=1,foo=1']), 'foo=2,bar=1');
  });

  test('over 512 characters: whole members removed, those over 128 first, then from the end', () => {
    const long = `long=${'x'.repeat(200)}`; // 205 characters
    const small = Array.from({ length: 10 }, (_, i) => `k${i}=${'v'.repeat(40)}`); // 43 each
    const list = [small[0]!, long, ...small.slice(1)];
    // 10 × 43 + 205 + 10 commas = 645 > 512: the long member goes, 10 × 43 + 9 = 439 is left.
    assert.equal(parseTraceState(list.join(',')), small.join(','));
    const many = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, '0')}=${'v'.repeat(40)}`); // 44 each
    const kept = parseTraceState(many.join(','))!;
    // 11 × 44 + 10 = 494 fits, 12 would be 539: the first eleven stay, in order.
    assert.equal(kept, many.slice(0, 11).join(','));
    assert.ok(kept.length <= 512);
  });
});

describe('new ids (tracing off makes one per span)', () => {
  test('trace ids are 32 and span ids 16 lowercase hex digits, each one new', async () => {
    const { newSpanId, newTraceId } = await import('../../src/ops/tracing.ts');
    // More than one 4 KiB pool refill: ids keep coming, and never repeat across refills.
    const spans = Array.from({ length: 2000 }, () => newSpanId());
    const traces = Array.from({ length: 2000 }, () => newTraceId());
    for (const s of spans) assert.match(s, /^[0-9a-f]{16}$/);
    for (const t of traces) assert.match(t, /^[0-9a-f]{32}$/);
    assert.equal(new Set(spans).size, spans.length);
    assert.equal(new Set(traces).size, traces.length);
    // A generated id is itself a valid parent.
    assert.ok(
      parseTraceContext(formatTraceparent({ traceId: traces[0]!, spanId: spans[0]!, sampled: false })),
    );
  });
});

describe('traceIdOf (the trace id the worker stores)', () => {
  test('the trace id of a valid traceparent of any accepted form; undefined otherwise', async () => {
    const { traceIdOf } = await import('../../src/contract/trace-context.ts');
    assert.equal(traceIdOf(VALID), TRACE);
    assert.equal(traceIdOf(`cc-${TRACE}-${SPAN}-01-later`), TRACE, 'a future version');
    assert.equal(traceIdOf(` ${VALID}`), TRACE, 'optional whitespace');
    for (const bad of [
      undefined,
      '',
      `00-${'0'.repeat(32)}-${SPAN}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE.replace('1', 'A')}-${SPAN}-01`,
      `ff-${TRACE}-${SPAN}-01`,
      `${VALID}-x`,
    ])
      assert.equal(traceIdOf(bad), undefined, String(bad));
  });
});
