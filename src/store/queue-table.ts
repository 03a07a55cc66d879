import type { QueuedMessage } from '../contract/queued-message.ts';
import { recordErased } from './message-status.ts';
import type { Queryable } from './pool.ts';

/**
 * SQL of the Postgres-backed queue (tables intake.queue and intake.idempotency_keys), one operation per
 * function. The queue logic (grouping, deadlines, leases, settling) is in queue/postgres/producer.ts and
 * queue/postgres/consumer.ts; only the statements live here.
 */

/** An Idempotency-Key as stored: the id it was first used for and the body's fingerprint. */
export interface IdempotencyRecord {
  key: string;
  messageId: string;
  /**
   * The keyed fingerprint (`fingerprint_mac`, migration 006). Undefined for keys stored before it: those
   * are honoured without a body check until they expire.
   */
  fingerprint: string | undefined;
}

/**
 * Claims keys for message ids; returns the keys this call inserted. A key already present (or being
 * inserted by a concurrent transaction, which this statement waits for) is not returned. The unkeyed
 * `fingerprint` column of earlier versions is left NULL: an older version reading the row then skips
 * the body check rather than refusing a retry (during a deploy).
 */
export async function claimIdempotencyKeys(
  tx: Queryable,
  claims: Array<{
    key: string;
    messageId: string;
    fingerprint: string | undefined;
    subject: string | undefined;
  }>,
): Promise<Set<string>> {
  const r = await tx.query<{ key: string }>(
    `INSERT INTO intake.idempotency_keys (key, message_id, fingerprint_mac, ip_pseudonym)
     SELECT k, m, f, decode(s, 'base64') FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[]) AS t(k, m, f, s)
     ON CONFLICT (key) DO NOTHING RETURNING key`,
    [
      claims.map((c) => c.key),
      claims.map((c) => c.messageId),
      claims.map((c) => c.fingerprint ?? null),
      claims.map((c) => c.subject ?? null),
    ],
  );
  return new Set(r.rows.map((row) => row.key));
}

export async function readIdempotencyKeys(tx: Queryable, keys: string[]): Promise<IdempotencyRecord[]> {
  const r = await tx.query<{ key: string; message_id: string; fingerprint_mac: string | null }>(
    'SELECT key, message_id, fingerprint_mac FROM intake.idempotency_keys WHERE key = ANY($1::text[])',
    [keys],
  );
  return r.rows.map((row) => ({
    key: row.key,
    messageId: row.message_id,
    fingerprint: row.fingerprint_mac ?? undefined,
  }));
}

/**
 * Forgets keys older than the window; returns how many. Also clears the unkeyed fingerprints an older
 * version may still have written during a deploy (migration 006 cleared those before it).
 */
export async function pruneIdempotencyKeys(db: Queryable, ttlHours: number): Promise<number> {
  await db.query('UPDATE intake.idempotency_keys SET fingerprint = NULL WHERE fingerprint IS NOT NULL');
  const r = await db.query(
    `DELETE FROM intake.idempotency_keys WHERE created_at < now() - $1 * interval '1 hour'`,
    [ttlHours],
  );
  return r.rowCount ?? 0;
}

/** Deletes keys this transaction claimed for calls it then refused, so a refused call leaves no key. */
export async function releaseIdempotencyKeys(tx: Queryable, keys: string[]): Promise<void> {
  await tx.query('DELETE FROM intake.idempotency_keys WHERE key = ANY($1::text[])', [keys]);
}

/** Deletes the Idempotency-Key records of a subject's requests (GDPR erasure); returns how many. */
export async function deleteIdempotencyKeysForSubject(tx: Queryable, pseudonym: string): Promise<number> {
  const r = await tx.query(`DELETE FROM intake.idempotency_keys WHERE ip_pseudonym = decode($1, 'base64')`, [
    pseudonym,
  ]);
  return r.rowCount ?? 0;
}

/** Most messages in one enqueue statement (a 10,000-line NDJSON request takes several). */
export const ENQUEUE_CHUNK = 1000;

/**
 * Adds messages to the queue (a message already there, by id, is left as it is), ENQUEUE_CHUNK per
 * statement so that each statement stays well inside the producer's statement timeout even for a
 * 10,000-line NDJSON request. The messages go as one JSON array parameter: one JSON.stringify per
 * statement, where a jsonb[] parameter needs every element escaped again as an array literal.
 */
export async function enqueueMessages(tx: Queryable, messages: QueuedMessage[]): Promise<void> {
  for (let i = 0; i < messages.length; i += ENQUEUE_CHUNK) {
    await tx.query(
      `INSERT INTO intake.queue (id, payload)
       SELECT (m->>'id')::uuid, m FROM jsonb_array_elements($1::jsonb) m ON CONFLICT (id) DO NOTHING`,
      [JSON.stringify(messages.slice(i, i + ENQUEUE_CHUNK))],
    );
  }
}

/** Whether the queue table exists (migrations create it; `intake doctor` may run before them). */
export async function queueTableExists(db: Queryable): Promise<boolean> {
  const r = await db.query<{ exists: boolean }>(`SELECT to_regclass('intake.queue') IS NOT NULL AS exists`);
  return r.rows[0]!.exists;
}

/** Messages waiting or leased, counted up to `limit` (so the count stays cheap on a huge backlog). */
export async function countQueued(db: Queryable, limit: number): Promise<number> {
  const r = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM (SELECT 1 FROM intake.queue LIMIT $1) q',
    [limit],
  );
  return r.rows[0]!.n;
}

export interface ClaimedRow {
  payload: QueuedMessage;
  attempts: number;
}

/**
 * Leases up to `max` visible messages for `leaseMs`: they become invisible to other workers and their
 * delivery count goes up (a visibility timeout, as SQS has). Committed at once, so a worker that dies
 * leaves the lease to expire and another worker takes them again.
 */
export async function claimQueued(db: Queryable, max: number, leaseMs: number): Promise<ClaimedRow[]> {
  const r = await db.query<ClaimedRow>(
    `UPDATE intake.queue q SET attempts = q.attempts + 1, visible_at = now() + $2 * interval '1 millisecond'
     FROM (SELECT id FROM intake.queue WHERE visible_at <= now() ORDER BY visible_at, id
           LIMIT $1 FOR UPDATE SKIP LOCKED) c
     WHERE q.id = c.id
     RETURNING q.payload, q.attempts`,
    [max, leaseMs],
  );
  return r.rows;
}

/**
 * Locks the rows of a claimed batch inside the storing transaction and returns the ids still queued.
 * A row that is gone was erased (GDPR) after the claim: its message must not be stored.
 */
export async function lockClaimed(tx: Queryable, ids: string[]): Promise<Set<string>> {
  const r = await tx.query<{ id: string }>(
    'SELECT id::text FROM intake.queue WHERE id = ANY($1::uuid[]) FOR UPDATE',
    [ids],
  );
  return new Set(r.rows.map((row) => row.id));
}

export async function deleteQueued(tx: Queryable, ids: string[]): Promise<void> {
  await tx.query('DELETE FROM intake.queue WHERE id = ANY($1::uuid[])', [ids]);
}

/** Makes messages visible again after their own delay, noting why. */
export async function rescheduleQueued(
  db: Queryable,
  retries: Array<{ id: string; delayMs: number; reason: string | null }>,
): Promise<void> {
  await db.query(
    `UPDATE intake.queue q SET visible_at = now() + r.delay * interval '1 millisecond',
            last_error = coalesce(r.reason, q.last_error)
     FROM unnest($1::uuid[], $2::int[], $3::text[]) AS r(id, delay, reason) WHERE q.id = r.id`,
    [retries.map((r) => r.id), retries.map((r) => r.delayMs), retries.map((r) => r.reason)],
  );
}

export async function countQueuedForSubject(db: Queryable, pseudonym: string): Promise<number> {
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM intake.queue WHERE payload->'ip'->>'pseudonym' = $1`,
    [pseudonym],
  );
  return r.rows[0]!.n;
}

/**
 * Deletes the subject's queued messages received up to its tombstone (written earlier in the same
 * transaction): those received later are new data and stay, exactly as the tombstone check would decide.
 */
export async function deleteQueuedForSubject(tx: Queryable, pseudonym: string): Promise<number> {
  // Their ids are recorded as erased in the same statement (message status).
  const r = await tx.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM intake.queue q USING intake.erasures e
       WHERE q.payload->'ip'->>'pseudonym' = $1 AND e.pseudonym = decode($1, 'base64')
         AND (q.payload->>'received_at')::timestamptz <= e.erased_at
       RETURNING q.id, q.payload->>'sender' AS sender),
     ${recordErased('gone')}
     SELECT count(*)::int AS n FROM gone`,
    [pseudonym],
  );
  return r.rows[0]!.n;
}

/**
 * Rewrites key rows as they are (delete and insert back, the API role's grants), so the transaction
 * writes WAL and its COMMIT waits for the synchronous standby like the one that created them.
 */
export async function touchIdempotencyKeys(tx: Queryable, keys: string[]): Promise<void> {
  await tx.query(
    `WITH gone AS (DELETE FROM intake.idempotency_keys WHERE key = ANY($1::text[]) RETURNING *)
     INSERT INTO intake.idempotency_keys SELECT * FROM gone`,
    [keys],
  );
}
