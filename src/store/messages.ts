import type { StoredMessage } from '../contract/api-schemas.ts';
import { uuidv7Time } from '../contract/message-id.ts';
import { redactFields } from '../contract/protected-fields.ts';
import type { QueuedMessage } from '../contract/queued-message.ts';
import type { Queryable } from './pool.ts';

/** SQL of the intake.messages table: the worker's batch insert and the read API's queries. */

/**
 * Inserts a batch in one statement. Idempotent: a message already stored (redelivery, retry) is skipped
 * by the (id, received_at) primary key. Messages received before their subject's erasure (a tombstone
 * in intake.erasures) are dropped (docs/contract.md §5). Returns how many rows were new and how many were dropped
 * for an erasure.
 */
export async function insertMessages(
  db: Queryable,
  batch: QueuedMessage[],
): Promise<{ inserted: number; erased: number }> {
  if (batch.length === 0) return { inserted: 0, erased: 0 };
  const cols = {
    id: [] as string[],
    received_at: [] as string[],
    ts: [] as number[],
    sender: [] as string[],
    message: [] as string[],
    priority: [] as (number | null)[],
    pseudonym: [] as (string | null)[],
    ciphertext: [] as (string | null)[],
    key_id: [] as (string | null)[],
  };
  for (const m of batch) {
    cols.id.push(m.id);
    cols.received_at.push(m.received_at);
    cols.ts.push(m.ts);
    cols.sender.push(m.sender);
    cols.message.push(JSON.stringify(m.message));
    cols.priority.push(m.priority);
    cols.pseudonym.push(m.ip?.pseudonym ?? null);
    cols.ciphertext.push(m.ip?.ciphertext ?? null);
    cols.key_id.push(m.ip?.key_id ?? null);
  }
  const r = await db.query<{ inserted: number; erased: number }>(
    `WITH input AS (
       SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::text[], $5::jsonb[], $6::int[],
                            $7::text[], $8::text[], $9::text[])
              AS t(id, received_at, ts, sender, message, priority, pseudonym, ciphertext, key_id)),
     kept AS (
       SELECT * FROM input t WHERE t.pseudonym IS NULL OR NOT EXISTS (
         SELECT 1 FROM intake.erasures e
         WHERE e.pseudonym = decode(t.pseudonym, 'base64') AND t.received_at <= e.erased_at)),
     ins AS (
       INSERT INTO intake.messages (id, received_at, ts, sender, message, priority, ip_pseudonym, ip_ciphertext, ip_key_id)
       SELECT t.id, t.received_at, t.ts, t.sender, t.message, t.priority,
              decode(t.pseudonym, 'base64'), decode(t.ciphertext, 'base64'), t.key_id
       FROM kept t
       ON CONFLICT DO NOTHING RETURNING 1)
     SELECT (SELECT count(*) FROM ins)::int AS inserted,
            ((SELECT count(*) FROM input) - (SELECT count(*) FROM kept))::int AS erased`,
    [
      cols.id,
      cols.received_at,
      cols.ts,
      cols.sender,
      cols.message,
      cols.priority,
      cols.pseudonym,
      cols.ciphertext,
      cols.key_id,
    ],
  );
  return r.rows[0]!;
}

interface Row {
  id: string;
  received_at: Date;
  ts: number;
  sender: string;
  message: Record<string, unknown>;
  priority: number | null;
  ip_pseudonym: Buffer | null;
  ip_ciphertext: Buffer | null;
  ip_key_id: string | null;
}

const SELECT = `SELECT id, received_at, ts, sender, message, priority, ip_pseudonym, ip_ciphertext, ip_key_id
  FROM intake.messages`;

/** A stored record with its protected values as stored (for reveal and export only). */
export type RawStoredMessage = StoredMessage & {
  ip?: { pseudonym: string; ciphertext: Buffer; key_id: string };
};

function toRecord(r: Row, raw = false): RawStoredMessage {
  const out: RawStoredMessage = {
    id: r.id,
    ts: r.ts,
    sender: r.sender,
    message: raw ? r.message : redactFields(r.message),
    priority: r.priority,
    received_at: r.received_at.toISOString(),
  };
  if (r.ip_ciphertext) {
    out['sent-from-ip'] = 'redacted';
    if (raw)
      out.ip = {
        pseudonym: r.ip_pseudonym!.toString('base64'),
        ciphertext: r.ip_ciphertext,
        key_id: r.ip_key_id!,
      };
  }
  return out;
}

export async function getMessage(
  db: Queryable,
  id: string,
  opts: { raw?: boolean } = {},
): Promise<RawStoredMessage | undefined> {
  // received_at is derived from the id, so the look-up touches one partition only.
  const r = await db.query<Row>(`${SELECT} WHERE id = $1 AND received_at = $2`, [id, uuidv7Time(id)]);
  return r.rows[0] ? toRecord(r.rows[0], opts.raw) : undefined;
}

export interface MessageQuery {
  sender?: string;
  /** Inclusive lower and exclusive upper bound on received_at. */
  since?: Date;
  until?: Date;
  limit: number;
  /** Continue after this (received_at, id), from the previous page's cursor. */
  after?: { receivedAt: Date; id: string };
}

/** Newest first; keyset pagination on (received_at, id), which the indexes serve directly. */
export async function queryMessages(db: Queryable, q: MessageQuery): Promise<StoredMessage[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  const arg = (v: unknown) => {
    args.push(v);
    return `$${args.length}`;
  };
  if (q.sender !== undefined) where.push(`sender = ${arg(q.sender)}`);
  if (q.since) where.push(`received_at >= ${arg(q.since)}`);
  if (q.until) where.push(`received_at < ${arg(q.until)}`);
  if (q.after) where.push(`(received_at, id) < (${arg(q.after.receivedAt)}, ${arg(q.after.id)}::uuid)`);
  const sql = `${SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY received_at DESC, id DESC LIMIT ${arg(q.limit)}`;
  const r = await db.query<Row>(sql, args);
  return r.rows.map((row) => toRecord(row));
}
