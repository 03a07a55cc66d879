import type { StoredMessage } from '../contract/message-schema.ts';
import { getMessage, type RawStoredMessage } from '../store/messages.ts';
import { type Pool, type Queryable, withTransaction } from '../store/pool.ts';
import { KeyDestroyedError } from './data-keys.ts';
import type { IpProtector } from './ip-protector.ts';
import { revealFields } from './message-fields.ts';

/**
 * GDPR operations on a data subject, identified by IP (SPEC §5). The IP is turned into its pseudonym
 * at once; only the pseudonym reaches SQL and the audit log. Every operation is audited.
 */

/** Erasures take this lock exclusively, worker batches take it shared (store-batch.ts): see erase(). */
export const ERASURE_LOCK = 'intake.erasure';

export async function audit(
  db: Queryable,
  actor: string,
  action: 'reveal' | 'export' | 'erase' | 'rotate-key' | 'destroy-keys',
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

export interface SubjectExport {
  subject: { 'sent-from-ip': string; pseudonym: string };
  messages: StoredMessage[];
  dead_letters: number;
  queued: number;
}

/** Everything held about an IP, with the IP and PII fields revealed (it is the subject's own data). */
export async function exportSubject(
  db: Pool,
  protector: IpProtector,
  ip: string,
  actor: string,
): Promise<SubjectExport> {
  const pseudonym = protector.pseudonym(ip);
  const r = await db.query<{ id: string; received_at: Date }>(
    `SELECT id::text, received_at FROM intake.messages WHERE ip_pseudonym = decode($1, 'base64') ORDER BY received_at, id`,
    [pseudonym],
  );
  const messages: StoredMessage[] = [];
  for (const row of r.rows) {
    const m = await getMessage(db, row.id, { raw: true });
    if (!m) continue;
    messages.push(await revealRecord(protector, m));
  }
  const counts = await db.query<{ dead: number; queued: number }>(
    `SELECT (SELECT count(*)::int FROM intake.dead_letters WHERE payload->'ip'->>'pseudonym' = $1) AS dead,
            (SELECT count(*)::int FROM intake.queue WHERE payload->'ip'->>'pseudonym' = $1) AS queued`,
    [pseudonym],
  );
  await audit(db, actor, 'export', pseudonym, { messages: messages.length });
  return {
    subject: { 'sent-from-ip': ip, pseudonym },
    messages,
    dead_letters: counts.rows[0]!.dead,
    queued: counts.rows[0]!.queued,
  };
}

export interface ErasureCounts {
  messages: number;
  dead_letters: number;
  queued: number;
}

/**
 * Deletes a subject's rows everywhere intake holds them and leaves a tombstone, so messages received
 * before now that are still in a queue are dropped when the worker meets them. The exclusive lock
 * waits for worker batches in progress (they hold it shared) so none commits a row behind our DELETE.
 */
export async function eraseSubject(
  db: Pool,
  protector: IpProtector,
  ip: string,
  actor: string,
): Promise<ErasureCounts> {
  const pseudonym = protector.pseudonym(ip);
  return withTransaction(db, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ERASURE_LOCK]);
    await tx.query(
      `INSERT INTO intake.erasures (pseudonym) VALUES (decode($1, 'base64'))
       ON CONFLICT (pseudonym) DO UPDATE SET erased_at = now()`,
      [pseudonym],
    );
    const m = await tx.query(`DELETE FROM intake.messages WHERE ip_pseudonym = decode($1, 'base64')`, [
      pseudonym,
    ]);
    const d = await tx.query(`DELETE FROM intake.dead_letters WHERE payload->'ip'->>'pseudonym' = $1`, [
      pseudonym,
    ]);
    const q = await tx.query(`DELETE FROM intake.queue WHERE payload->'ip'->>'pseudonym' = $1`, [pseudonym]);
    const counts = { messages: m.rowCount ?? 0, dead_letters: d.rowCount ?? 0, queued: q.rowCount ?? 0 };
    await audit(tx, actor, 'erase', pseudonym, counts);
    return counts;
  });
}

/** One stored message with its IP and PII fields in clear, audited. */
export async function revealMessage(
  db: Pool,
  protector: IpProtector,
  id: string,
  actor: string,
): Promise<StoredMessage | undefined> {
  const m = await getMessage(db, id, { raw: true });
  if (!m) return undefined;
  const out = await revealRecord(protector, m);
  await audit(db, actor, 'reveal', m.ip?.pseudonym ?? null, { id });
  return out;
}

async function revealRecord(protector: IpProtector, m: RawStoredMessage): Promise<StoredMessage> {
  const { ip, ...rest } = m;
  const out: StoredMessage = { ...rest, message: await revealFields(protector, rest.message) };
  if (ip) {
    try {
      out['sent-from-ip'] = await protector.reveal({ ciphertext: ip.ciphertext, key_id: ip.key_id });
    } catch (err) {
      if (!(err instanceof KeyDestroyedError)) throw err;
      out['sent-from-ip'] = 'destroyed';
    }
  }
  return out;
}
