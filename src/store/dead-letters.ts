import type { Static } from '@sinclair/typebox';
import type { DeadLetter as DeadLetterView } from '../contract/api-schemas.ts';
import { redactFields } from '../contract/protected-fields.ts';
import type { QueuedMessage } from '../contract/queued-message.ts';
import { traceIdOf } from '../contract/trace-context.ts';
import type { Queryable } from './pool.ts';

/**
 * SQL of intake.dead_letters: messages that could not be stored after bounded retries, with the reason.
 * The worker writes them (store-batch.ts); operators list, replay and discard them (ingest/replay.ts,
 * the API's /v1/dead-letters, `intake dead-letters`).
 */

export interface DeadLetter {
  id: string;
  /** The queued message as the API produced it (the IP only as pseudonym and ciphertext). */
  payload: QueuedMessage;
  reason: string;
  attempts: number;
  /** RFC 3339 with microseconds (the keyset cursor needs them all). */
  failed_at: string;
}

export interface DeadLetterFilter {
  sender?: string;
  /** Substring of the reason (the PostgreSQL error), case-insensitive. */
  reason?: string;
  /** failed_at >= since, < until. */
  since?: Date;
  until?: Date;
  /** Continue after this (failed_at as issued, id), from the previous page. */
  after?: { failedAt: string; id: string };
  limit: number;
}

const COLUMNS = `id::text, payload, reason, attempts,
  to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS failed_at`;

export async function insertDeadLetters(
  tx: Queryable,
  rows: Array<{ message: QueuedMessage; reason: string; attempts: number }>,
): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO intake.dead_letters (id, payload, reason, attempts)
     SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::int[]) ON CONFLICT (id) DO NOTHING`,
    [
      rows.map((r) => r.message.id),
      rows.map((r) => JSON.stringify(r.message)),
      rows.map((r) => r.reason),
      rows.map((r) => r.attempts),
    ],
  );
}

/** Newest first; keyset pagination on (failed_at, id). */
export async function listDeadLetters(db: Queryable, f: DeadLetterFilter): Promise<DeadLetter[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  const arg = (v: unknown) => {
    args.push(v);
    return `$${args.length}`;
  };
  if (f.sender !== undefined) where.push(`payload->>'sender' = ${arg(f.sender)}`);
  if (f.reason !== undefined) where.push(`strpos(lower(reason), lower(${arg(f.reason)})) > 0`);
  if (f.since) where.push(`failed_at >= ${arg(f.since)}`);
  if (f.until) where.push(`failed_at < ${arg(f.until)}`);
  if (f.after)
    where.push(`(failed_at, id) < (${arg(f.after.failedAt)}::timestamptz, ${arg(f.after.id)}::uuid)`);
  const r = await db.query<DeadLetter>(
    `SELECT ${COLUMNS} FROM intake.dead_letters
     ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY failed_at DESC, id DESC LIMIT ${arg(f.limit)}`,
    args,
  );
  return r.rows;
}

export async function getDeadLetter(db: Queryable, id: string): Promise<DeadLetter | undefined> {
  const r = await db.query<DeadLetter>(`SELECT ${COLUMNS} FROM intake.dead_letters WHERE id = $1`, [id]);
  return r.rows[0];
}

/** Deletes the given dead letters; returns the ids that were there. */
export async function deleteDeadLetters(db: Queryable, ids: string[]): Promise<string[]> {
  const r = await db.query<{ id: string }>(
    'DELETE FROM intake.dead_letters WHERE id = ANY($1::uuid[]) RETURNING id::text',
    [ids],
  );
  return r.rows.map((row) => row.id);
}

/** Most dead letters one DELETE of expireDeadLetters removes, so a backlog never makes one long lock. */
const EXPIRE_CHUNK = 10_000;

/**
 * Retention: deletes the dead letters that failed more than `days` ago (their partition and data key go
 * the same way: docs/privacy.md); returns how many. In chunks, oldest first.
 */
export async function expireDeadLetters(db: Queryable, days: number): Promise<number> {
  let total = 0;
  for (;;) {
    const r = await db.query(
      `DELETE FROM intake.dead_letters WHERE id IN (
         SELECT id FROM intake.dead_letters WHERE failed_at < now() - $1 * interval '1 day'
         ORDER BY failed_at LIMIT ${EXPIRE_CHUNK})`,
      [days],
    );
    total += r.rowCount ?? 0;
    if ((r.rowCount ?? 0) < EXPIRE_CHUNK) return total;
  }
}

export async function countDeadLetters(db: Queryable): Promise<number> {
  const r = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM intake.dead_letters');
  return r.rows[0]!.n;
}

/** The dead letter as the API shows it: the message as a stored record would read, plus why it failed. */
export function deadLetterView(d: DeadLetter): Static<typeof DeadLetterView> {
  const m = d.payload;
  return {
    id: d.id,
    sender: m.sender,
    ts: m.ts,
    message: redactFields(m.message),
    priority: m.priority,
    ...(m.ip ? { 'sent-from-ip': 'redacted' as const } : {}),
    received_at: m.received_at,
    trace_id: traceIdOf(m.traceparent) ?? null,
    failed_at: d.failed_at,
    attempts: d.attempts,
    reason: d.reason,
  };
}
