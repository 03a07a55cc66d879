import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTestDatabase } from '../../harness/db.ts';
import { queuedMessage } from '../../harness/messages.ts';
import type { QueuedMessage } from '../../src/contract/queued-message.ts';
import { copyMessages, getMessage, insertMessages } from '../../src/store/messages.ts';
import { createPool, withTransaction } from '../../src/store/pool.ts';

/**
 * The worker's COPY write path stores exactly what the queue held: text with the characters COPY's
 * format escapes (tab, newline, CR, backslash) and JSON escapes round-trip; a redelivered batch inserts
 * nothing twice; a message received before its subject's erasure is dropped and counted. Replayed dead
 * letters are counted when inserted or dropped, never again on a redelivery (loss accounting).
 */
test('copyMessages round-trips awkward text, is idempotent and honours erasure tombstones', async (t) => {
  const db = await createTestDatabase('copy_messages');
  const pool = createPool({ connectionString: db.url, max: 2, applicationName: 'test', onError: () => {} });
  t.after(async () => {
    await pool.end();
    await db.drop();
  });
  await pool.query('SELECT intake.ensure_partitions(1, 1)');
  const awkward: QueuedMessage = {
    ...queuedMessage(1, { withIp: true }),
    sender: 'tab\there\nnew\\line\rcr',
    message: { text: 'a\tb\nc\\d\re "quoted" \\N ünïcødé 🚀', nested: { list: [1, null, 'x\\ty'] } },
    priority: null,
  };
  const plain = queuedMessage(2);
  const erased = queuedMessage(3, { withIp: true });
  await pool.query(
    "INSERT INTO intake.erasures (pseudonym, erased_at) VALUES (decode($1, 'base64'), now())",
    [erased.ip!.pseudonym],
  );

  const first = await withTransaction(pool, (tx) => copyMessages(tx, [awkward, plain, erased]));
  assert.deepEqual(first, { inserted: 2, erased: 1, replayed: 0 });
  // In the same transaction twice (the bisection under savepoints does this): nothing left staged.
  const again = await withTransaction(pool, async (tx) => {
    const a = await copyMessages(tx, [awkward]);
    const b = await copyMessages(tx, [plain]);
    return [a, b];
  });
  assert.deepEqual(again, [
    { inserted: 0, erased: 0, replayed: 0 },
    { inserted: 0, erased: 0, replayed: 0 },
  ]);

  const stored = await getMessage(pool, awkward.id, { raw: true });
  assert.equal(stored?.sender, awkward.sender);
  assert.deepEqual(stored?.message, awkward.message);
  assert.equal(stored?.priority, null);
  assert.equal(stored?.ip?.pseudonym, awkward.ip!.pseudonym);
  assert.equal(stored?.ip?.ciphertext.toString('base64'), awkward.ip!.ciphertext);
  assert.equal(stored?.ip?.key_id, awkward.ip!.key_id);
  assert.equal((await getMessage(pool, plain.id))?.sender, plain.sender);
  assert.equal(await getMessage(pool, erased.id), undefined);
});

test('replayed messages are counted once: when inserted or dropped for an erasure, not on redelivery', async (t) => {
  const db = await createTestDatabase('copy_replayed');
  const pool = createPool({ connectionString: db.url, max: 2, applicationName: 'test', onError: () => {} });
  t.after(async () => {
    await pool.end();
    await db.drop();
  });
  await pool.query('SELECT intake.ensure_partitions(1, 1)');
  const replayed = (m: QueuedMessage): QueuedMessage => ({ ...m, replayed: 1 });
  const a = replayed(queuedMessage(11));
  const b = queuedMessage(12);
  const gone = replayed(queuedMessage(13, { withIp: true }));
  await pool.query(
    "INSERT INTO intake.erasures (pseudonym, erased_at) VALUES (decode($1, 'base64'), now())",
    [gone.ip!.pseudonym],
  );
  const first = await withTransaction(pool, (tx) => copyMessages(tx, [a, b, gone]));
  assert.deepEqual(first, { inserted: 2, erased: 1, replayed: 2 });
  // A redelivery (NATS naks a whole envelope when one of its messages is retried; a crash before the
  // ack): nothing is inserted, so the stored replay is not counted again.
  const again = await withTransaction(pool, (tx) => copyMessages(tx, [a, b]));
  assert.deepEqual(again, { inserted: 0, erased: 0, replayed: 0 });
  // The unnest() path counts the same way.
  const c = replayed(queuedMessage(14));
  assert.deepEqual(await insertMessages(pool, [c, queuedMessage(15)]), {
    inserted: 2,
    erased: 0,
    replayed: 1,
  });
  assert.deepEqual(await insertMessages(pool, [c]), { inserted: 0, erased: 0, replayed: 0 });
});
