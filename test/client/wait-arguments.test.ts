import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { IntakeClient } from '../../src/client/index.ts';

/**
 * waitUntilStored from plain JavaScript, where nothing checks the arguments' types: a missing or
 * nonsensical timeout must be refused at once, not poll for ever.
 */
test('waitUntilStored without a usable timeout rejects at once, and asks nothing', async (t) => {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"x","status":"unknown"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new IntakeClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  const wait = client.waitUntilStored as (id: string, timeoutMs?: unknown) => Promise<unknown>;
  for (const timeoutMs of [undefined, Number.NaN, -1, '1000']) {
    // Bounded, so that a wait that never settles fails here instead of hanging the suite.
    const settled = await Promise.race([
      wait.call(client, '01a25153-fbf5-74b6-92ae-bddb84b6968c', timeoutMs).then(
        () => 'resolved',
        (err: Error) => err,
      ),
      new Promise((resolve) => setTimeout(resolve, 5000, 'still waiting')),
    ]);
    assert.ok(settled instanceof TypeError, `${String(timeoutMs)}: ${String(settled)}`);
    assert.match(settled.message, /timeoutMs must be a number/);
  }
  assert.equal(requests, 0);
});
