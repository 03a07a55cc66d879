import type { ErrorCode } from '../contract/error-codes.ts';
import type { RejectReason } from '../ops/metrics.ts';

/** How the HTTP edge answers one error code, and counts it. */
export interface ErrorRow {
  /** The one HTTP status the code is answered with. */
  status: number;
  /** The problem's `title`, the same for every answer with this code. */
  title: string;
  /**
   * The `reason` an ingest request answered with this code counts its messages under in
   * intake_messages_rejected_total (docs/alerting.md). Codes no ingest route answers with (404, 405, 408,
   * 431, and SERVER_BUSY, sent before a request is read) have one too, so every code is counted.
   */
  reason: RejectReason;
  /** `Retry-After` in seconds, unless the error carries its own (a rate limit's refill). */
  retryAfterS?: number;
  /** The problem's `detail`: `%s` stands for the error's message; without a template it is the message. */
  detail?: string;
  /** Logged at this level besides being answered. */
  log?: 'warn' | 'error';
}

/**
 * Every error code intake answers with, one row each, as fastify's lib/errors.js declares its own
 * (`createError(code, message, status)`). The body is RFC 9457 problem details; `type` is
 * urn:intake:problem:<code>. docs/errors.md lists every code with its status and meaning, and
 * test/http/error-registry.test.ts holds the two together and each code to a place that raises it.
 */
export const ERRORS: Readonly<Record<ErrorCode, ErrorRow>> = {
  INVALID_MESSAGE: { status: 400, title: 'The message does not match the contract', reason: 'invalid' },
  INVALID_JSON: { status: 400, title: 'The body is not valid JSON', reason: 'invalid_json' },
  JSON_TOO_COMPLEX: {
    status: 400,
    title: 'The body holds too many JSON objects and arrays',
    reason: 'invalid_json',
  },
  INVALID_REQUEST: { status: 400, title: 'The request is not valid', reason: 'invalid_request' },
  UNAUTHENTICATED: { status: 401, title: 'A valid API key is required', reason: 'unauthenticated' },
  FORBIDDEN: { status: 403, title: 'The API key may not do this', reason: 'forbidden' },
  NOT_FOUND: { status: 404, title: 'Not found', reason: 'invalid_request' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed', reason: 'invalid_request' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time', reason: 'invalid_request' },
  IDEMPOTENCY_KEY_IN_FLIGHT: {
    status: 409,
    title: 'A request with this Idempotency-Key is in progress',
    reason: 'in_flight',
    retryAfterS: 1,
    detail: '%s: retry after it finished',
  },
  BODY_TOO_LARGE: { status: 413, title: 'The body is larger than the limit', reason: 'too_large' },
  MESSAGE_TOO_LARGE: {
    status: 413,
    title: 'The message is larger than the queue accepts',
    reason: 'too_large',
  },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large', reason: 'invalid_request' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'The body must be application/json',
    reason: 'unsupported_media_type',
  },
  UNSUPPORTED_ENCODING: {
    status: 415,
    title: 'The Content-Encoding is not supported',
    reason: 'unsupported_media_type',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'The Idempotency-Key was used with a different body',
    reason: 'invalid_request',
    detail: '%s: use a new key for a new request',
  },
  RATE_LIMITED: { status: 429, title: 'Too many requests', reason: 'rate_limited' },
  QUEUE_UNAVAILABLE: {
    status: 503,
    title: 'The queue cannot take messages right now',
    reason: 'queue_unavailable',
    retryAfterS: 1,
    detail: '%s; nothing was accepted, retry shortly',
  },
  QUEUE_FULL: {
    status: 503,
    title: 'The queue is full',
    reason: 'queue_full',
    retryAfterS: 5,
    detail: '%s; nothing was accepted, retry later',
  },
  ACCEPTANCE_UNKNOWN: {
    status: 503,
    title: 'The queue did not confirm in time: the message may have been accepted',
    reason: 'outcome_unknown',
    retryAfterS: 1,
    detail:
      'the queue did not confirm in time, so the messages may or may not have been accepted: retry with ' +
      'the same Idempotency-Key (it returns the same ids and stores each message once); without a key, ' +
      'look the ids up with GET /v1/messages/{id} before sending again',
  },
  DATABASE_UNAVAILABLE: {
    status: 503,
    title: 'The database cannot be reached right now',
    reason: 'error',
    retryAfterS: 2,
    detail: 'the database cannot be reached; retry shortly',
  },
  SERVER_BUSY: {
    status: 503,
    title: 'The server holds as many connections as it may',
    reason: 'error',
    retryAfterS: 1,
  },
  INTERNAL: {
    status: 500,
    title: 'Internal error',
    reason: 'error',
    detail: 'an unexpected error occurred; it has been logged',
    log: 'error',
  },
};
