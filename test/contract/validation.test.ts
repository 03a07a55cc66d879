import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestApp, type TestApp } from '../helpers/app.ts';

/**
 * docs/contract.md §1, case by case, through the real HTTP API: each payload is POSTed and must be accepted (202)
 * or rejected (400) with a violation at exactly the expected pointers.
 */
const ok = { ts: '1530228282', sender: 'testy-test-service', message: { foo: 'bar', baz: 'bang' } };
const nest = (depth: number): Record<string, unknown> => {
  let v: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < depth; i++) v = { n: v };
  return v;
};

type Case = [name: string, body: unknown, expect: 'accept' | string[]];
const cases: Case[] = [
  // valid
  ['spec example', { ...ok, 'sent-from-ip': '1.2.3.4', priority: 2 }, 'accept'],
  ['minimal: ts, sender, message', ok, 'accept'],
  ['ts as JSON integer', { ...ok, ts: 1530228282 }, 'accept'],
  ['ts zero', { ...ok, ts: 0 }, 'accept'],
  ['ts "0"', { ...ok, ts: '0' }, 'accept'],
  ['ts at the maximum 253402300799', { ...ok, ts: 253402300799 }, 'accept'],
  ['ts digit string with leading zeros', { ...ok, ts: '0001530228282' }, 'accept'],
  ['sender of 256 characters', { ...ok, sender: 'x'.repeat(256) }, 'accept'],
  ['sender with unicode', { ...ok, sender: 'sërvice-✓' }, 'accept'],
  ['message with one non-null field among nulls', { ...ok, message: { a: null, b: 0 } }, 'accept'],
  ['message field false', { ...ok, message: { a: false } }, 'accept'],
  ['message nested 32 levels', { ...ok, message: nest(32) }, 'accept'],
  ['message with an array value', { ...ok, message: { list: [1, 2, { x: 1 }] } }, 'accept'],
  ['sent-from-ip 0.0.0.0', { ...ok, 'sent-from-ip': '0.0.0.0' }, 'accept'],
  ['sent-from-ip 255.255.255.255', { ...ok, 'sent-from-ip': '255.255.255.255' }, 'accept'],
  ['priority negative int32 min', { ...ok, priority: -2147483648 }, 'accept'],
  ['priority int32 max', { ...ok, priority: 2147483647 }, 'accept'],
  [
    'priority 2.0 is the integer 2 in JSON',
    JSON.parse('{"ts":1,"sender":"a","message":{"a":1},"priority":2.0}'),
    'accept',
  ],
  [
    'message key named __proto__ inside message',
    JSON.parse('{"ts":1,"sender":"a","message":{"__proto__":{"x":1}}}'),
    'accept',
  ],
  // ts
  ['ts missing', { sender: 'a', message: { a: 1 } }, ['/ts']],
  ['ts milliseconds (integer)', { ...ok, ts: 1530228282000 }, ['/ts']],
  ['ts milliseconds (string)', { ...ok, ts: '1530228282000' }, ['/ts']],
  ['ts negative', { ...ok, ts: -1 }, ['/ts']],
  ['ts "-1"', { ...ok, ts: '-1' }, ['/ts']],
  ['ts "+1530228282"', { ...ok, ts: '+1530228282' }, ['/ts']],
  ['ts with spaces', { ...ok, ts: ' 1530228282' }, ['/ts']],
  ['ts with decimal point', { ...ok, ts: '1530228282.5' }, ['/ts']],
  ['ts fractional number', { ...ok, ts: 1530228282.5 }, ['/ts']],
  ['ts exponent string', { ...ok, ts: '1e9' }, ['/ts']],
  ['ts empty string', { ...ok, ts: '' }, ['/ts']],
  ['ts ISO date', { ...ok, ts: '2018-06-28T23:24:42Z' }, ['/ts']],
  ['ts null', { ...ok, ts: null }, ['/ts']],
  ['ts boolean', { ...ok, ts: true }, ['/ts']],
  ['ts beyond 9999-12-31', { ...ok, ts: 253402300800 }, ['/ts']],
  ['ts absurdly long digit string', { ...ok, ts: '9'.repeat(400) }, ['/ts']],
  // sender
  ['sender missing', { ts: 1, message: { a: 1 } }, ['/sender']],
  ['sender empty', { ...ok, sender: '' }, ['/sender']],
  ['sender number', { ...ok, sender: 42 }, ['/sender']],
  ['sender null', { ...ok, sender: null }, ['/sender']],
  ['sender of 257 characters', { ...ok, sender: 'x'.repeat(257) }, ['/sender']],
  ['sender with NUL (cannot be stored)', { ...ok, sender: 'a\u0000b' }, ['/sender']],
  // message
  ['message missing', { ts: 1, sender: 'a' }, ['/message']],
  ['message empty object', { ...ok, message: {} }, ['/message']],
  ['message only null fields', { ...ok, message: { a: null } }, ['/message']],
  ['message array', { ...ok, message: [{ a: 1 }] }, ['/message']],
  ['message null', { ...ok, message: null }, ['/message']],
  ['message string', { ...ok, message: '{"a":1}' }, ['/message']],
  ['message nested 33 levels', { ...ok, message: nest(33) }, ['/message']],
  ['message with NUL in a value', { ...ok, message: { a: 'x\u0000' } }, ['/message']],
  ['message with a lone surrogate', { ...ok, message: { a: '\ud800' } }, ['/message']],
  // sent-from-ip
  ['ip null', { ...ok, 'sent-from-ip': null }, ['/sent-from-ip']],
  ['ip number', { ...ok, 'sent-from-ip': 16909060 }, ['/sent-from-ip']],
  ['ip with leading zero', { ...ok, 'sent-from-ip': '01.2.3.4' }, ['/sent-from-ip']],
  ['ip octet 256', { ...ok, 'sent-from-ip': '1.2.3.256' }, ['/sent-from-ip']],
  ['ip three octets', { ...ok, 'sent-from-ip': '1.2.3' }, ['/sent-from-ip']],
  ['ip five octets', { ...ok, 'sent-from-ip': '1.2.3.4.5' }, ['/sent-from-ip']],
  ['ip CIDR', { ...ok, 'sent-from-ip': '1.2.3.4/32' }, ['/sent-from-ip']],
  ['ip IPv6', { ...ok, 'sent-from-ip': '::1' }, ['/sent-from-ip']],
  ['ip IPv4-mapped IPv6', { ...ok, 'sent-from-ip': '::ffff:1.2.3.4' }, ['/sent-from-ip']],
  ['ip with trailing newline', { ...ok, 'sent-from-ip': '1.2.3.4\n' }, ['/sent-from-ip']],
  ['ip with spaces', { ...ok, 'sent-from-ip': ' 1.2.3.4' }, ['/sent-from-ip']],
  ['ip empty', { ...ok, 'sent-from-ip': '' }, ['/sent-from-ip']],
  ['ip hex octets', { ...ok, 'sent-from-ip': '0x1.2.3.4' }, ['/sent-from-ip']],
  // priority
  ['priority fraction', { ...ok, priority: 1.5 }, ['/priority']],
  ['priority string', { ...ok, priority: '2' }, ['/priority']],
  ['priority above int32', { ...ok, priority: 2147483648 }, ['/priority']],
  ['priority null', { ...ok, priority: null }, ['/priority']],
  // unknown fields
  ['extra top-level field', { ...ok, extra: 1 }, ['/extra']],
  ['differently-cased field', { ...ok, Sender: 'a' }, ['/Sender']],
  [
    'top-level __proto__',
    JSON.parse('{"ts":1,"sender":"a","message":{"a":1},"__proto__":{"x":1}}'),
    ['/__proto__'],
  ],
  ['top-level constructor', { ...ok, constructor: { prototype: {} } }, ['/constructor']],
  ['field with a slash is escaped in the pointer', { ...ok, 'a/b~c': 1 }, ['/a~1b~0c']],
  // everything at once: every violation is listed
  [
    'every violation listed',
    { ts: 'x', sender: '', message: {}, 'sent-from-ip': '1.2.3', priority: 0.5, z: 1 },
    ['/z', '/ts', '/sender', '/message', '/sent-from-ip', '/priority'],
  ],
  // not an object
  ['body is an array', [ok], ['']],
  ['body is a string', 'x', ['']],
  ['body is null', null, ['']],
];

describe('message contract (docs/contract.md §1) over HTTP', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp('validation', { roles: ['api'] });
  });
  after(() => app.close());

  test('the table has at least 40 cases', () => assert.ok(cases.length >= 40, String(cases.length)));

  for (const [name, body, expected] of cases) {
    test(name, async () => {
      const res = await app.post('/v1/messages', JSON.stringify(body));
      const json = (await res.json()) as { id?: string; errors?: Array<{ pointer: string; detail: string }> };
      if (expected === 'accept') {
        assert.equal(res.status, 202, JSON.stringify(json));
        assert.match(json.id!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      } else {
        assert.equal(res.status, 400, JSON.stringify(json));
        assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
        const pointers = json.errors!.map((e) => e.pointer);
        assert.deepEqual([...pointers].sort(), [...expected].sort(), JSON.stringify(json.errors));
        for (const e of json.errors!) assert.ok(e.detail.length > 5, 'each violation says what is wrong');
      }
    });
  }

  test('milliseconds get a hint', async () => {
    const res = await app.post('/v1/messages', { ...ok, ts: 1530228282000 });
    const json = (await res.json()) as { errors: Array<{ detail: string }> };
    assert.match(json.errors[0]!.detail, /milliseconds/);
  });
});
