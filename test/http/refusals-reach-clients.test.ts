import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RefusalMatrix, startRefusalMatrix } from './refusal-matrix.ts';

/**
 * Issue 15: every early refusal reaches the client that is still uploading. Each real client on the
 * machine (test/clients/) sends bodies of 1.5×, 24× and 64× the limit through each refusal intake
 * makes before reading a body, 20 times, and must read the exact status every time.
 */
describe('every early refusal reaches real clients that are still uploading', () => {
  let m: RefusalMatrix;
  before(async () => {
    m = await startRefusalMatrix('refusals');
  });
  after(() => m?.close());

  test('each client reads the exact status 20 times out of 20, for every refusal and body size', async (t) => {
    assert.ok(m.clients.length >= 2);
    assert.deepEqual(await m.run(t, `${m.app.url}/v1/messages`, { tries: 20 }), []);
  });
});
