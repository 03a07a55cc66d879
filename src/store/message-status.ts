import type { QueryConfig } from 'pg';
import { uuidv7Time } from '../contract/message-id.ts';
import { traceIdOf } from '../contract/trace-context.ts';
import type { Queryable } from './pool.ts';

/**
 * SQL of message status (GET /v1/messages/{id}/status): where intake's database says a message is,
 * and the record of erased message ids (intake.erased_messages, migration 008) that erasure and the
 * worker write.
 */

/** Where the database says one message is: the first of stored, erased, dead-lettered, queued. */
export type StatusRow =
  | { kind: 'stored'; sender: string; storedAt: Date | null; traceId: string | null }
  | { kind: 'erased'; sender: string; erasedAt: Date }
  | {
      kind: 'dead_lettered';
      sender: string;
      failedAt: Date;
      reason: string;
      attempts: number;
      traceId: string | null;
    }
  | { kind: 'queued'; sender: string; attempts: number; traceId: string | null };

interface Row {
  kind: StatusRow['kind'];
  sender: string | null;
  at: Date | null;
  reason: string | null;
  attempts: number | null;
  /** The stored trace_id, or the queued message's traceparent (validated here). */
  trace: string | null;
}

/** Longest a status look-up waits for the database: as long as the pool waits for a connection. */
export const STATUS_TIMEOUT_MS = 5_000;

/**
 * One statement, so one snapshot: a message the worker stores (and takes off the Postgres queue)
 * between two look-ups cannot fall between them. Every branch is a primary-key probe; intake.messages
 * is probed with the received_at the UUIDv7 carries, so only one partition is read. The order decides
 * when a message is in two places at once: a stored row is the truth, and a queue row of a stored
 * message (only ever inside the worker's transaction) is not visible to this snapshot.
 */
export async function lookUpStatus(
  db: Queryable,
  id: string,
  timeoutMs = STATUS_TIMEOUT_MS,
): Promise<StatusRow | undefined> {
  // pg reads `query_timeout` from the query's config; its types do not declare it.
  const query: QueryConfig & { query_timeout: number } = {
    // Client-side: a database that stops answering (frozen, a network black hole) would otherwise hold
    // the request for as long as TCP keeps the connection; the route answers `unknown` with the reason
    // instead. statement_timeout cannot help (no server applies it); the pool drops the connection.
    query_timeout: timeoutMs,
    text: `SELECT kind, sender, at, reason, attempts, trace FROM (
       SELECT 1 AS rank, 'stored' AS kind, sender, stored_at AS at, NULL::text AS reason, NULL::int AS attempts,
              trace_id AS trace
         FROM intake.messages WHERE id = $1 AND received_at = $2
       UNION ALL
       SELECT 2, 'erased', sender, erased_at, NULL, NULL, NULL FROM intake.erased_messages WHERE id = $1
       UNION ALL
       SELECT 3, 'dead_lettered', payload->>'sender', failed_at, reason, attempts, payload->>'traceparent'
         FROM intake.dead_letters WHERE id = $1
       UNION ALL
       SELECT 4, 'queued', payload->>'sender', NULL, NULL, attempts, payload->>'traceparent'
         FROM intake.queue WHERE id = $1
     ) s ORDER BY rank LIMIT 1`,
    values: [id, uuidv7Time(id)],
  };
  const r = await db.query<Row>(query);
  const row = r.rows[0];
  if (!row) return undefined;
  const sender = row.sender ?? '';
  switch (row.kind) {
    case 'stored':
      return { kind: 'stored', sender, storedAt: row.at, traceId: row.trace };
    case 'erased':
      return { kind: 'erased', sender, erasedAt: row.at! };
    case 'dead_lettered':
      return {
        kind: 'dead_lettered',
        sender,
        failedAt: row.at!,
        reason: row.reason ?? '',
        attempts: row.attempts ?? 0,
        traceId: traceIdOf(row.trace ?? undefined) ?? null,
      };
    case 'queued':
      return {
        kind: 'queued',
        sender,
        attempts: row.attempts ?? 0,
        traceId: traceIdOf(row.trace ?? undefined) ?? null,
      };
  }
}

/**
 * A data-modifying CTE (named `recorded`) that records the rows of CTE `source` (columns id, sender) as
 * erased at `at`. Used by the statements that delete or drop a subject's messages, so the record is
 * written atomically with the deletion. DO NOTHING without a conflict target needs only INSERT (the
 * worker holds no SELECT on the table) and skips an id recorded already (a redelivery).
 */
export const recordErased = (source: string, at = 'clock_timestamp()') => `recorded AS (
       INSERT INTO intake.erased_messages (id, sender, erased_at)
       SELECT id, coalesce(sender, ''), ${at} FROM ${source}
       ON CONFLICT DO NOTHING)`;

/** Deletes the erased-message records past the retention window (bounded by the database); how many. */
export async function pruneErasedMessages(db: Queryable): Promise<number> {
  const r = await db.query<{ n: number }>('SELECT intake.prune_erased_messages() AS n');
  return r.rows[0]!.n;
}
