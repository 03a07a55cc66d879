import { randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { uuidv7Time } from '../src/contract/message-id.ts';
import type { QueuedMessage } from '../src/contract/queued-message.ts';

/**
 * A queued message as the API would put it on the queue (~350 bytes), for tests and benchmarks that
 * drive the queue or the store directly. `withIp` adds realistic protected-IP fields.
 */
export function queuedMessage(n: number, opts: { sender?: string; withIp?: boolean } = {}): QueuedMessage {
  const id = uuidv7();
  const m: QueuedMessage = {
    v: 1,
    id,
    received_at: uuidv7Time(id).toISOString(),
    ts: 1530228282,
    sender: opts.sender ?? 'testy-test-service',
    message: { foo: 'bar', baz: 'bang', n },
    priority: 2,
  };
  if (opts.withIp) {
    m.ip = {
      pseudonym: randomBytes(32).toString('base64'),
      ciphertext: randomBytes(48).toString('base64'),
      key_id: 'k1',
    };
  }
  return m;
}
