import type { Violation } from '../contract/validator.ts';
import type { RejectReason } from '../ops/metrics.ts';

/**
 * Every error intake answers with: a stable code, one HTTP status, and a documented meaning. The body
 * is RFC 9457 problem details (`application/problem+json`); `type` is urn:intake:problem:<code>, listed in docs/errors.md.
 */
export const ERRORS = {
  INVALID_MESSAGE: { status: 400, title: 'The message does not match the contract' },
  INVALID_JSON: { status: 400, title: 'The body is not valid JSON' },
  JSON_TOO_COMPLEX: { status: 400, title: 'The body holds too many JSON objects and arrays' },
  INVALID_REQUEST: { status: 400, title: 'The request is not valid' },
  UNAUTHENTICATED: { status: 401, title: 'A valid API key is required' },
  FORBIDDEN: { status: 403, title: 'The API key may not do this' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  IDEMPOTENCY_KEY_IN_FLIGHT: { status: 409, title: 'A request with this Idempotency-Key is in progress' },
  BODY_TOO_LARGE: { status: 413, title: 'The body is larger than the limit' },
  MESSAGE_TOO_LARGE: { status: 413, title: 'The message is larger than the queue accepts' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The body must be application/json' },
  UNSUPPORTED_ENCODING: { status: 415, title: 'The Content-Encoding is not supported' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'The Idempotency-Key was used with a different body' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  QUEUE_UNAVAILABLE: { status: 503, title: 'The queue cannot take messages right now' },
  QUEUE_FULL: { status: 503, title: 'The queue is full' },
  ACCEPTANCE_UNKNOWN: {
    status: 503,
    title: 'The queue did not confirm in time: the message may have been accepted',
  },
  DATABASE_UNAVAILABLE: { status: 503, title: 'The database cannot be reached right now' },
  SERVER_BUSY: { status: 503, title: 'The server holds as many connections as it may' },
  INTERNAL: { status: 500, title: 'Internal error' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Loss accounting: the `reason` an ingest request's messages are counted under in
 * intake_messages_rejected_total when it is answered with a code (docs/alerting.md lists them). One row
 * per code, so a new code cannot be left uncounted; several codes share a reason where an operator acts
 * on them alike. Codes no ingest route answers with (404, 405, 408, 431, and 503 SERVER_BUSY, sent before a request is
 * read) still map, for totality.
 */
export const REJECT_REASON: Record<ErrorCode, RejectReason> = {
  INVALID_MESSAGE: 'invalid',
  INVALID_JSON: 'invalid_json',
  JSON_TOO_COMPLEX: 'invalid_json',
  INVALID_REQUEST: 'invalid_request',
  UNAUTHENTICATED: 'unauthenticated',
  FORBIDDEN: 'forbidden',
  NOT_FOUND: 'invalid_request',
  METHOD_NOT_ALLOWED: 'invalid_request',
  REQUEST_TIMEOUT: 'invalid_request',
  IDEMPOTENCY_KEY_IN_FLIGHT: 'in_flight',
  BODY_TOO_LARGE: 'too_large',
  MESSAGE_TOO_LARGE: 'too_large',
  HEADERS_TOO_LARGE: 'invalid_request',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  UNSUPPORTED_ENCODING: 'unsupported_media_type',
  IDEMPOTENCY_KEY_REUSED: 'invalid_request',
  RATE_LIMITED: 'rate_limited',
  QUEUE_UNAVAILABLE: 'queue_unavailable',
  QUEUE_FULL: 'queue_full',
  ACCEPTANCE_UNKNOWN: 'outcome_unknown',
  DATABASE_UNAVAILABLE: 'error',
  SERVER_BUSY: 'error',
  INTERNAL: 'error',
};

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  errors?: Violation[];
  /** How many violations there were, when more were found than `errors` lists. */
  errors_total?: number;
  /** ACCEPTANCE_UNKNOWN: the ids the messages were published under. */
  ids?: string[];
}

/** An error that becomes a problem response as it is. */
export class ProblemError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    detail: string,
    readonly extra: { errors?: Violation[]; retryAfterS?: number; headers?: Record<string, string> } = {},
    options?: { cause?: unknown },
  ) {
    super(detail, options);
    this.name = 'ProblemError';
    this.status = ERRORS[code].status;
  }
}

export function problemBody(
  code: ErrorCode,
  detail: string,
  errors?: Violation[],
  instance?: string,
): ProblemBody {
  const { status, title } = ERRORS[code];
  const body: ProblemBody = {
    type: `urn:intake:problem:${code.toLowerCase().replace(/_/g, '-')}`,
    title,
    status,
    detail,
    code,
  };
  if (instance) body.instance = instance;
  if (errors) body.errors = errors;
  return body;
}
