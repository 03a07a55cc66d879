import pg from 'pg';

/**
 * The one place that reads PostgreSQL errors (SQLSTATE codes, https://www.postgresql.org/docs/current/errcodes-appendix.html)
 * and node-postgres' socket errors, so every caller classifies them the same way.
 */

interface PgLikeError {
  code?: string;
  message?: string;
}

const codeOf = (err: unknown): string => (err as PgLikeError | undefined)?.code ?? '';

/**
 * The database or the connection to it is unwell (not the statement's fault): class 08 connection
 * exception, 57P admin/crash shutdown, socket errors, pg's own connect timeout / terminated messages.
 */
export function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  if (/^(08|57P)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code))
    return true;
  const message = (err as PgLikeError | undefined)?.message ?? '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
    message,
  );
}

/**
 * Worth retrying the whole operation later: connection trouble, serialization failure or deadlock
 * (40), insufficient resources (53), operator intervention (57: shutdown, statement/lock timeouts), system
 * errors (58), lock not available (55P03). An error without any code is a socket failure.
 */
export function isTransient(err: unknown): boolean {
  const code = codeOf(err);
  return code === '' || isConnectionError(err) || /^(40|53|57|58)/.test(code) || code === '55P03';
}

/**
 * The statement was refused before anything was committed, whatever happened to the connection later:
 * integrity constraint (23) or transaction rollback (40, e.g. a deferred constraint or serialization
 * failure reported by COMMIT itself).
 */
export function isRefusedBeforeCommit(err: unknown): boolean {
  return /^(23|40)/.test(codeOf(err));
}

/**
 * A statement sent on its own (an implicit transaction) was answered with an error by the server (pg's
 * DatabaseError, with a SQLSTATE) that is not about the connection going away: the statement was rolled
 * back, so nothing of it was committed. Without an answer (socket error, timeout) the outcome is unknown.
 */
export function isRolledBackStatement(err: unknown): boolean {
  return err instanceof pg.DatabaseError && !isConnectionError(err);
}

/** A value the statement could not use (class 22 data exception, e.g. out-of-range timestamp). */
export function isDataException(err: unknown): boolean {
  return /^22/.test(codeOf(err));
}

/** PostgreSQL's "no partition of relation … found for row" (check_violation on a partitioned insert). */
export function isMissingPartition(err: unknown): boolean {
  return codeOf(err) === '23514' && /no partition of relation/.test((err as PgLikeError).message ?? '');
}

/**
 * PostgreSQL's warning that a COMMIT stopped waiting for its synchronous standby ("canceling wait for
 * synchronous replication …", raised by a cancel request or a backend termination while it waited):
 * the transaction is committed locally and may not be on any standby, so a failover can lose it. Read
 * from the notice's source-file field, which, unlike the message, is never translated.
 */
export function isSyncRepWaitCancelled(notice: { file?: string | undefined }): boolean {
  return notice.file === 'syncrep.c';
}

/**
 * A write returned, but PostgreSQL cannot have confirmed it as replicated: its wait for a synchronous
 * standby was cancelled (by intake at its deadline, or by anyone else). Committed locally, maybe not on
 * a standby: the outcome is unknown to anyone who needs it to survive a failover.
 */
export class CommitNotConfirmedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommitNotConfirmedError';
  }
}

/** No answer from PostgreSQL by the caller's deadline: the connection was given up (destroyed). */
export class DeadlineExceededError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeadlineExceededError';
  }
}
