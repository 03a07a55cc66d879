import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { StoredMessage } from '../contract/api-schemas.ts';
import { uuidv7Time } from '../contract/message-id.ts';
import { redactFields } from '../contract/protected-fields.ts';
import type { QueuedMessage } from '../contract/queued-message.ts';
import { traceIdOf } from '../contract/trace-context.ts';
import { recordErased } from './message-status.ts';
import type { Queryable } from './pool.ts';

/** SQL of the intake.messages table: the worker's batch insert and the read API's queries. */

/** What a batch insert did: rows new, rows dropped for an erasure, and how many of those were replays. */
export interface StoreCounts {
  inserted: number;
  erased: number;
  /**
   * Messages marked `replayed` (dead letters put back on the queue) that were inserted or dropped for
   * an erasure: counted from the same INSERT as `inserted`, so a replay stored already (redelivery)
   * is not counted twice (loss accounting, docs/alerting.md).
   */
  replayed: number;
}

/**
 * Inserts a batch in one statement. Idempotent: a message already stored (redelivery, retry) is skipped
 * by the (id, received_at) primary key. Messages received before their subject's erasure (a tombstone
 * in intake.erasures) are dropped (docs/contract.md §5). Returns how many rows were new and how many were dropped
 * for an erasure.
 */
export async function insertMessages(db: Queryable, batch: QueuedMessage[]): Promise<StoreCounts> {
  if (batch.length === 0) return { inserted: 0, erased: 0, replayed: 0 };
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
    trace_id: [] as (string | null)[],
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
    cols.trace_id.push(traceIdOf(m.traceparent) ?? null);
  }
  const r = await db.query<StoreCounts>(
    `WITH input AS (
       SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::text[], $5::jsonb[], $6::int[],
                            $7::text[], $8::text[], $9::text[], $10::text[])
              AS t(id, received_at, ts, sender, message, priority, pseudonym, ciphertext, key_id, trace_id)),
     ${storeInput('$11')}`,
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
      cols.trace_id,
      replayedIds(batch),
    ],
  );
  return r.rows[0]!;
}

/**
 * The end of both write paths, after a CTE `input` of the batch's rows: drops rows of erased subjects
 * (tombstones in intake.erasures, their ids recorded as erased at the tombstone's time for message
 * status), inserts the rest idempotently, and counts both, and the replays among them (`replayed`: the
 * parameter holding replayedIds(); empty for almost every batch).
 */
const storeInput = (replayed: string) => `flagged AS (
       SELECT t.*, e.erased_at FROM input t LEFT JOIN intake.erasures e
         ON e.pseudonym = decode(t.pseudonym, 'base64') AND t.received_at <= e.erased_at),
     kept AS (SELECT * FROM flagged WHERE erased_at IS NULL),
     gone AS (SELECT id, sender, erased_at FROM flagged WHERE erased_at IS NOT NULL),
     ${recordErased('gone', 'erased_at')},
     ins AS (
       INSERT INTO intake.messages (id, received_at, ts, sender, message, priority, ip_pseudonym, ip_ciphertext, ip_key_id,
                                    trace_id)
       SELECT t.id, t.received_at, t.ts, t.sender, t.message, t.priority,
              decode(t.pseudonym, 'base64'), decode(t.ciphertext, 'base64'), t.key_id, t.trace_id
       FROM kept t
       ON CONFLICT DO NOTHING RETURNING id)
     SELECT (SELECT count(*) FROM ins)::int AS inserted,
            ((SELECT count(*) FROM input) - (SELECT count(*) FROM kept))::int AS erased,
            ((SELECT count(*) FROM ins WHERE id = ANY(${replayed}::uuid[]))
             + (SELECT count(*) FROM input WHERE id = ANY(${replayed}::uuid[]))
             - (SELECT count(*) FROM kept WHERE id = ANY(${replayed}::uuid[])))::int AS replayed`;

/** Ids of the batch's replayed dead letters (QueuedMessage.replayed). */
function replayedIds(batch: QueuedMessage[]): string[] {
  const ids: string[] = [];
  for (const m of batch) if (m.replayed !== undefined) ids.push(m.id);
  return ids;
}

/**
 * The worker's write path: the same as insertMessages (idempotent, erasure tombstones respected, same
 * counts), but the batch goes to the server with COPY into a session temp table and is moved from there
 * with one INSERT … SELECT … ON CONFLICT DO NOTHING. COPY's text rows cost less to build here and to
 * parse there than unnest() of nine arrays (bench: worker and PostgreSQL CPU per row).
 *
 * Must run inside a transaction (the worker's, under a savepoint): the staged rows are consumed by the
 * INSERT (DELETE … RETURNING) and the table is emptied at commit (ON COMMIT DELETE ROWS, a truncate, so
 * it never bloats), which in autocommit would happen between COPY and INSERT.
 */
export async function copyMessages(tx: pg.ClientBase, batch: QueuedMessage[]): Promise<StoreCounts> {
  if (batch.length === 0) return { inserted: 0, erased: 0, replayed: 0 };
  // Cheap when it exists (a catalog look-up); created in the caller's transaction, so a rollback that
  // undoes it leaves no stale belief behind.
  await tx.query(
    `CREATE TEMP TABLE IF NOT EXISTS ${STAGE} (id uuid, received_at timestamptz, ts bigint, sender text,
       message jsonb, priority int, pseudonym text, ciphertext text, key_id text, trace_id text)
       ON COMMIT DELETE ROWS`,
  );
  await pipeline(Readable.from([copyText(batch)]), tx.query(copyFrom(`COPY pg_temp.${STAGE} FROM STDIN`)));
  const r = await tx.query<StoreCounts>(
    `WITH input AS (DELETE FROM pg_temp.${STAGE} RETURNING *),
     ${storeInput('$1')}`,
    [replayedIds(batch)],
  );
  return r.rows[0]!;
}

const STAGE = 'intake_stage_messages';

/**
 * COPY text format: tab-separated columns, \N for NULL, backslash, tab, newline and CR escaped. A value
 * missing from a message from another producer becomes NULL, as it did in unnest()'s arrays.
 */
function copyText(batch: QueuedMessage[]): string {
  let out = '';
  for (const m of batch) {
    out += `${field(m.id)}\t${field(m.received_at)}\t${field(m.ts)}\t${field(m.sender)}\t`;
    out += `${field(JSON.stringify(m.message))}\t${field(m.priority)}\t`;
    out += `${field(m.ip?.pseudonym)}\t${field(m.ip?.ciphertext)}\t${field(m.ip?.key_id)}\t`;
    out += `${field(traceIdOf(m.traceparent))}\n`;
  }
  return out;
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function field(v: unknown): string {
  if (v === null || v === undefined) return '\\N';
  const s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return COPY_SPECIAL.test(s) ? s.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : s;
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
  trace_id: string | null;
}

const SELECT = `SELECT id, received_at, ts, sender, message, priority, ip_pseudonym, ip_ciphertext, ip_key_id,
  trace_id FROM intake.messages`;

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
    trace_id: r.trace_id,
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
  /** Only these senders (a key bound to senders, or `?sender=`); undefined: every sender. */
  senders?: string[];
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
  // One sender as an equality, so the (sender, received_at, id) index serves the page directly.
  if (q.senders?.length === 1) where.push(`sender = ${arg(q.senders[0])}`);
  else if (q.senders !== undefined) where.push(`sender = ANY(${arg(q.senders)}::text[])`);
  if (q.since) where.push(`received_at >= ${arg(q.since)}`);
  if (q.until) where.push(`received_at < ${arg(q.until)}`);
  if (q.after) where.push(`(received_at, id) < (${arg(q.after.receivedAt)}, ${arg(q.after.id)}::uuid)`);
  const sql = `${SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY received_at DESC, id DESC LIMIT ${arg(q.limit)}`;
  const r = await db.query<Row>(sql, args);
  return r.rows.map((row) => toRecord(row));
}
