import type { Violation } from './validator.ts';

/**
 * Every code intake answers a client with (docs/errors.md), and nothing about how: the HTTP edge gives
 * each one row of status, title, metric reason and Retry-After (http/error-registry.ts), so the parts
 * that raise them (queue/, auth/, the parsers) stay free of HTTP. A new error is one code here, one row
 * there, one line in docs/errors.md, and a place that raises it (test/http/error-registry.test.ts).
 */
export const ERROR_CODES = [
  'INVALID_MESSAGE',
  'INVALID_JSON',
  'JSON_TOO_COMPLEX',
  'INVALID_REQUEST',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'REQUEST_TIMEOUT',
  'IDEMPOTENCY_KEY_IN_FLIGHT',
  'BODY_TOO_LARGE',
  'MESSAGE_TOO_LARGE',
  'HEADERS_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNSUPPORTED_ENCODING',
  'IDEMPOTENCY_KEY_REUSED',
  'RATE_LIMITED',
  'QUEUE_UNAVAILABLE',
  'QUEUE_FULL',
  'ACCEPTANCE_UNKNOWN',
  'DATABASE_UNAVAILABLE',
  'SERVER_BUSY',
  'INTERNAL',
] as const;

/** A code a client may be answered with. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** What an error tells its client besides its code and message. */
export interface ErrorDetails {
  /** Seconds until a retry may succeed, when the error knows better than its code's default (a rate limit's refill). */
  retryAfterS?: number;
  /** UNAUTHENTICATED: how to authenticate, an RFC 9110 challenge (`Bearer realm="intake"`). */
  challenge?: string;
  /** ACCEPTANCE_UNKNOWN: the ids the messages were published under, to look up later. */
  ids?: string[];
  /** The violations found, each at an RFC 6901 pointer into the request. */
  errors?: Violation[];
}

/**
 * An error of intake's own that a client is answered with. It carries its code and details only; the
 * HTTP edge looks the code up (http/error-map.ts), so a new error needs no new branch there.
 */
export class CodedError extends Error {
  declare readonly retryAfterS?: number;
  declare readonly challenge?: string;
  declare readonly ids?: string[];
  declare readonly errors?: Violation[];

  constructor(
    readonly code: ErrorCode,
    message: string,
    details: ErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CodedError';
    Object.assign(this, details);
  }
}
