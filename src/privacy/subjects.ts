import type { StoredMessage } from '../contract/api-schemas.ts';
import type { QueueProducer } from '../queue/queue.ts';
import { getMessage, type RawStoredMessage } from '../store/messages.ts';
import { type Pool, withTransaction } from '../store/pool.ts';
import {
  countSubjectDeadLetters,
  deleteSubjectDeadLetters,
  deleteSubjectMessages,
  lockErasuresExclusive,
  subjectMessageIds,
  writeAudit,
  writeTombstone,
} from '../store/subjects.ts';
import { KeyDestroyedError } from './data-keys.ts';
import { CiphertextMismatchError, type IpProtector } from './ip-protector.ts';
import { NOT_REVEALED, revealFields } from './message-fields.ts';

/**
 * GDPR operations on a data subject, identified by IP (docs/contract.md §5). The IP is turned into its pseudonym
 * at once; only the pseudonym reaches SQL and the audit log. Every operation is audited.
 */

export interface SubjectExport {
  subject: { 'sent-from-ip': string; pseudonym: string };
  messages: StoredMessage[];
  dead_letters: number;
  queued: number;
}

/** Everything held about an IP, with the IP and PII fields revealed (it is the subject's own data). */
export async function exportSubject(
  db: Pool,
  queue: QueueProducer,
  protector: IpProtector,
  ip: string,
  actor: string,
): Promise<SubjectExport> {
  const pseudonym = protector.pseudonym(ip);
  const messages: StoredMessage[] = [];
  const refused: string[] = [];
  for (const id of await subjectMessageIds(db, pseudonym)) {
    const m = await getMessage(db, id, { raw: true });
    if (!m) continue;
    const r = await revealRecord(protector, m);
    messages.push(r);
    if (r.not_revealed) refused.push(id);
  }
  const [dead, queued] = await Promise.all([
    countSubjectDeadLetters(db, pseudonym),
    queue.queuedForSubject(pseudonym),
  ]);
  await writeAudit(db, actor, 'export', pseudonym, {
    messages: messages.length,
    ...(refused.length ? { not_revealed: refused } : {}),
  });
  return { subject: { 'sent-from-ip': ip, pseudonym }, messages, dead_letters: dead, queued };
}

export interface ErasureCounts {
  messages: number;
  dead_letters: number;
  queued: number;
  /** Idempotency-Key records of the subject's requests (they hold its pseudonym and a fingerprint). */
  idempotency_keys: number;
}

/**
 * Deletes a subject's rows everywhere intake holds them and leaves a tombstone, so messages received
 * before the erasure that are still on their way are never stored. The exclusive erasure lock waits for
 * worker batches in progress (they hold it shared), so none commits a row behind the DELETE; a batch
 * that starts afterwards finds its erased queue rows gone (Postgres queue) or meets the tombstone.
 */
export async function eraseSubject(
  db: Pool,
  queue: QueueProducer,
  protector: IpProtector,
  ip: string,
  actor: string,
): Promise<ErasureCounts> {
  const pseudonym = protector.pseudonym(ip);
  return withTransaction(db, async (tx) => {
    await lockErasuresExclusive(tx);
    await writeTombstone(tx, pseudonym);
    const counts = {
      messages: await deleteSubjectMessages(tx, pseudonym),
      dead_letters: await deleteSubjectDeadLetters(tx, pseudonym),
      queued: await queue.forgetSubject(tx, pseudonym),
      idempotency_keys: await queue.forgetIdempotencyKeys(tx, pseudonym),
    };
    await writeAudit(tx, actor, 'erase', pseudonym, counts);
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
  await writeAudit(db, actor, 'reveal', m.ip?.pseudonym ?? null, {
    id,
    ...(out.not_revealed ? { not_revealed: out.not_revealed } : {}),
  });
  return out;
}

/**
 * A record with its IP and PII fields in clear, each ciphertext checked against the message id and
 * field it is stored under: one that was made for another (copied there in the database) is shown as
 * "not revealed" and its pointer listed in `not_revealed`.
 */
async function revealRecord(protector: IpProtector, m: RawStoredMessage): Promise<StoredMessage> {
  const { ip, ...rest } = m;
  const fields = await revealFields(protector, rest.message, m.id);
  const out: StoredMessage = { ...rest, message: fields.message };
  const refused = fields.refused;
  if (ip) {
    try {
      out['sent-from-ip'] = await protector.reveal(
        { ciphertext: ip.ciphertext, key_id: ip.key_id },
        // Every IP ciphertext intake wrote before the binding is v1: all may be.
        { id: m.id, field: 'sent-from-ip', legacy: true },
      );
    } catch (err) {
      if (err instanceof KeyDestroyedError) out['sent-from-ip'] = 'destroyed';
      else if (err instanceof CiphertextMismatchError) {
        out['sent-from-ip'] = NOT_REVEALED;
        refused.unshift('/sent-from-ip');
      } else throw err;
    }
  }
  if (refused.length) out.not_revealed = refused;
  return out;
}
