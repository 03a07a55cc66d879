import { recordErased } from './message-status.ts';
import type { Queryable } from './pool.ts';

/**
 * SQL for data subjects (GDPR): erasure tombstones, the erasure lock, a subject's rows, the audit log.
 * The operations built from these are in privacy/subjects.ts.
 */

const ERASURE_LOCK = 'intake.erasure';

/**
 * Worker batches take the erasure lock shared, erasures exclusive: an erasure waits for the batches in
 * progress to commit (and then deletes their rows), and a batch that starts after an erasure sees its
 * tombstone and its deleted queue rows.
 */
export async function lockErasuresShared(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [ERASURE_LOCK]);
}

export async function lockErasuresExclusive(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ERASURE_LOCK]);
}

/**
 * Writes (or moves forward) the subject's tombstone. Its time is taken now, after the lock is held
 * (clock_timestamp, not the transaction's start), so every message received before the erasure took
 * effect is covered.
 */
export async function writeTombstone(tx: Queryable, pseudonym: string): Promise<void> {
  await tx.query(
    `INSERT INTO intake.erasures (pseudonym, erased_at) VALUES (decode($1, 'base64'), clock_timestamp())
     ON CONFLICT (pseudonym) DO UPDATE SET erased_at = clock_timestamp()`,
    [pseudonym],
  );
}

/** Deletes the subject's stored messages and records their ids as erased (message status); how many. */
export async function deleteSubjectMessages(tx: Queryable, pseudonym: string): Promise<number> {
  const r = await tx.query<{ n: number }>(
    `WITH gone AS (DELETE FROM intake.messages WHERE ip_pseudonym = decode($1, 'base64') RETURNING id, sender),
     ${recordErased('gone')}
     SELECT count(*)::int AS n FROM gone`,
    [pseudonym],
  );
  return r.rows[0]!.n;
}

/** Deletes the subject's dead letters and records their ids as erased (message status); how many. */
export async function deleteSubjectDeadLetters(tx: Queryable, pseudonym: string): Promise<number> {
  const r = await tx.query<{ n: number }>(
    `WITH gone AS (DELETE FROM intake.dead_letters WHERE payload->'ip'->>'pseudonym' = $1
                   RETURNING id, payload->>'sender' AS sender),
     ${recordErased('gone')}
     SELECT count(*)::int AS n FROM gone`,
    [pseudonym],
  );
  return r.rows[0]!.n;
}

export async function countSubjectDeadLetters(db: Queryable, pseudonym: string): Promise<number> {
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM intake.dead_letters WHERE payload->'ip'->>'pseudonym' = $1`,
    [pseudonym],
  );
  return r.rows[0]!.n;
}

/** The ids of a subject's stored messages, oldest first. */
export async function subjectMessageIds(db: Queryable, pseudonym: string): Promise<string[]> {
  const r = await db.query<{ id: string }>(
    `SELECT id::text FROM intake.messages WHERE ip_pseudonym = decode($1, 'base64') ORDER BY received_at, id`,
    [pseudonym],
  );
  return r.rows.map((row) => row.id);
}

export type AuditAction =
  | 'reveal'
  | 'export'
  | 'erase'
  | 'rotate-key'
  | 'destroy-keys'
  | 'replay-dead-letter'
  | 'discard-dead-letter';

export async function writeAudit(
  db: Queryable,
  actor: string,
  action: AuditAction,
  subject: string | null,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await db.query('INSERT INTO intake.audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)', [
    actor,
    action,
    subject,
    JSON.stringify(detail),
  ]);
}
