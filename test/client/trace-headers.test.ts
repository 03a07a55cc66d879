import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { IntakeClient } from '../../src/client/index.ts';

/**
 * A trace context the caller got from elsewhere (a header it received) may hold bytes no HTTP header
 * can carry. fetch refuses such a value before sending: the client must still send the message, once,
 * without it, rather than fail every attempt as if intake could not be reached.
 */
test('a traceparent or tracestate that cannot be a header value is left out; the send succeeds', async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.writeHead(202, { 'content-type': 'application/json' }).end('{"id":"x","status":"accepted"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new IntakeClient({
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    retry: { attempts: 2, baseMs: 1, maxMs: 5 },
  });
  const valid = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const m = { ts: 1, sender: 'a', message: { n: 1 } };

  assert.equal((await client.send(m, { traceparent: `${valid}\r\nx-evil: 1` })).id, 'x');
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.traceparent, undefined);
  assert.equal(seen[0]!['x-evil'], undefined);

  await client.send(m, { traceparent: valid, tracestate: 'vendor=caf\u00e9' });
  assert.equal(seen[1]!.traceparent, valid);
  assert.equal(seen[1]!.tracestate, undefined);

  await client.send(m, { traceparent: valid, tracestate: 'vendor=1' });
  assert.equal(seen[2]!.tracestate, 'vendor=1');
  assert.equal(seen.length, 3);
});
