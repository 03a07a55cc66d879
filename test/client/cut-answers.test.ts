import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { IntakeClient } from '../../src/client/index.ts';

/**
 * Answers that break after their status line: a connection reset in the middle of the body, or a body
 * that stops coming (a proxy's idle timeout). The client must treat them as it treats a reset before
 * the answer, retrying under the same Idempotency-Key, not throw whatever fetch threw.
 */

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(answers: Answer[]) {
  const seen: Array<{ method: string; key: string | undefined }> = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method ?? '', key: req.headers['idempotency-key'] as string | undefined });
      (answers[seen.length - 1] ?? answers.at(-1)!)(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { url, seen, close };
}

const ID = '01a25153-fbf5-74b6-92ae-bddb84b6968c';
const json =
  (status: number, body: unknown): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
/** The status line and half a body, then a reset. */
const cut: Answer = (req, res) => {
  res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/json' });
  res.write('{"id":"01a2', () => setTimeout(() => res.socket?.destroy(), 20));
};
/** The status line and half a body, then nothing. */
const stall: Answer = (req, res) => {
  res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/json' });
  res.write('{"id":"01a2');
};
/** A 202 whose body is not JSON (a proxy's page). */
const notJson: Answer = (_req, res) => {
  res.writeHead(202, { 'content-type': 'text/html' }).end('<html>accepted?</html>');
};

for (const [what, first] of [
  ['reset in the middle of the body', cut],
  ['a body that stops coming', stall],
  ['a 202 whose body is not JSON', notJson],
] as const) {
  test(`send: ${what} is retried under the same key`, async (t) => {
    const server = await serve([first, json(202, { id: ID, status: 'accepted' })]);
    t.after(() => server.close());
    const client = new IntakeClient({ url: server.url, timeoutMs: 500, retry: { baseMs: 1, maxMs: 5 } });
    const { id } = await client.send({ ts: 1, sender: 'a', message: { n: 1 } });
    assert.equal(id, ID);
    assert.equal(server.seen.length, 2);
    assert.ok(server.seen[0]!.key);
    assert.equal(server.seen[1]!.key, server.seen[0]!.key);
  });
}

test('status: an answer cut after its status line is retried', async (t) => {
  const server = await serve([cut, json(200, { id: ID, status: 'unknown' })]);
  t.after(() => server.close());
  const client = new IntakeClient({ url: server.url, timeoutMs: 500, retry: { baseMs: 1, maxMs: 5 } });
  assert.deepEqual(await client.status(ID), { id: ID, status: 'unknown' });
  assert.equal(server.seen.length, 2);
});
