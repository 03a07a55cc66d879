import type { FastifyError } from 'fastify';
import { CodedError, type ErrorCode } from '../contract/error-codes.ts';
import { toViolations, type Violation } from '../contract/validator.ts';
import { isConnectionError, isDataException } from '../store/errors.ts';
import { ERRORS } from './error-registry.ts';

/**
 * The one place where an error becomes an HTTP answer: intake's own errors (ProblemError and the
 * queue's and auth's, all CodedError) by their code's row in error-registry.ts, Fastify's framework
 * errors (each code mapped explicitly, never by status alone), the body stream's errors and the
 * database's. Anything unknown is a 500 that is logged; docs/contract.md §2 says no input may cause one,
 * and the tests hold every input class to that.
 */
export interface MappedProblem {
  code: ErrorCode;
  detail: string;
  /** The first violations (at most MAX_LISTED_VIOLATIONS)... */
  errors?: Violation[];
  /** ...and how many there were in all. */
  errorsTotal?: number;
  headers?: Record<string, string>;
  /** ACCEPTANCE_UNKNOWN: the ids the messages were published under. */
  ids?: string[];
  /** How loudly to log it: unknown errors are errors, surprising-but-handled ones warnings. */
  log?: 'warn' | 'error';
}

/** Violations listed in one answer; the total is given besides, so a body never grows with the input. */
export const MAX_LISTED_VIOLATIONS = 100;

/** Fastify's client-caused errors, each with intake's code and words (lib/errors.js of fastify 5). */
const FASTIFY: Record<string, { code: ErrorCode; detail: (e: FastifyError, limit: number) => string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'BODY_TOO_LARGE',
    detail: (_e, limit) => `the body exceeds ${limit} bytes`,
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    detail: () => 'send the body as application/json',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'INVALID_REQUEST',
    detail: () => 'the body is not as long as its Content-Length says',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'INVALID_JSON', detail: () => 'the body is empty' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'INVALID_JSON', detail: () => 'the body is not valid JSON' },
  FST_ERR_CTP_INSTANCE_ALREADY_STARTED: {
    code: 'INVALID_REQUEST',
    detail: () => 'the request cannot be parsed',
  },
  FST_ERR_BAD_URL: { code: 'INVALID_REQUEST', detail: () => 'the URL is not valid (bad percent-encoding)' },
  FST_ERR_INVALID_URL: { code: 'INVALID_REQUEST', detail: () => 'the URL is not valid' },
  FST_ERR_MAX_PARAM_LENGTH: {
    code: 'INVALID_REQUEST',
    detail: () => 'a path parameter is longer than 200 characters',
  },
  FST_ERR_ROUTE_MISSING_CONTENT_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    detail: () => 'send a Content-Type header',
  },
  FST_ERR_ROUTE_MISSING_CONTENT: { code: 'INVALID_REQUEST', detail: () => 'the request has no body' },
  FST_ERR_NOT_FOUND: { code: 'NOT_FOUND', detail: () => 'no route for this path' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'INVALID_REQUEST', detail: () => 'the request cannot be routed' },
};

/** How a violation's place is named, by where Fastify found it. */
const CONTEXT: Record<string, string> = { headers: 'header', body: 'body field', params: 'path parameter' };

/** Codes Node gives a request body stream that broke before it ended (client went away or lied). */
const BODY_STREAM = new Set(['ECONNRESET', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

export function mapError(err: unknown, opts: { bodyLimit: number; ingestRoute?: boolean }): MappedProblem {
  if (err instanceof CodedError) return answerFor(err.code, err);
  const fe = err as FastifyError;
  if (fe?.validation) {
    const violations = toViolations(fe.validation as never, MAX_LISTED_VIOLATIONS);
    const n = violations.total ?? violations.length;
    if (fe.validationContext === 'body' && opts.ingestRoute) {
      return {
        code: 'INVALID_MESSAGE',
        detail: `${n} violation${n === 1 ? '' : 's'} of the message contract`,
        errors: violations,
        errorsTotal: n,
      };
    }
    const where = CONTEXT[fe.validationContext ?? ''] ?? 'query parameter';
    return {
      code: 'INVALID_REQUEST',
      detail: `invalid ${where}s`,
      errors: violations.map((v) => ({
        pointer: v.pointer,
        // toViolations words unknown fields for messages; other bodies have their own fields.
        detail: `${where} ${v.detail.startsWith('is not an allowed field') ? 'is not an allowed field' : v.detail}`,
      })),
      errorsTotal: n,
    };
  }
  const code = fe?.code ?? '';
  const known = FASTIFY[code];
  if (known) return { code: known.code, detail: known.detail(fe, opts.bodyLimit) };
  // Fastify marks an error of the body stream with a 400 status (content-type-parser.js rawBody).
  if (BODY_STREAM.has(code) && fe.statusCode === 400) {
    return {
      code: 'INVALID_REQUEST',
      detail: 'the request body was cut off before it ended',
    };
  }
  if (isConnectionError(err)) return answerFor('DATABASE_UNAVAILABLE');
  // A value validation let through that PostgreSQL refuses: the request's fault, but our gap.
  if (isDataException(err)) {
    return { code: 'INVALID_REQUEST', detail: 'a parameter cannot be used', log: 'warn' };
  }
  const status = fe?.statusCode;
  if (status && status >= 400 && status < 500) {
    return {
      code: 'INVALID_REQUEST',
      detail: 'the request cannot be processed',
      log: 'warn',
    };
  }
  return answerFor('INTERNAL');
}

/**
 * The answer for a code: its row's detail (around the error's message), Retry-After and log level, with
 * what the error itself carries (its own Retry-After, a challenge, ids, violations).
 */
function answerFor(code: ErrorCode, err?: CodedError): MappedProblem {
  const row = ERRORS[code];
  const message = err?.message ?? '';
  const headers: Record<string, string> = {};
  const retryAfterS = err?.retryAfterS ?? row.retryAfterS;
  if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS);
  if (err?.challenge !== undefined) headers['www-authenticate'] = err.challenge;
  return {
    code,
    // A function, so a `$` in the message is not read as a replacement pattern.
    detail: row.detail === undefined ? message : row.detail.replace('%s', () => message),
    ...(err?.errors
      ? { errors: err.errors.slice(0, MAX_LISTED_VIOLATIONS), errorsTotal: err.errors.length }
      : {}),
    ...(err?.ids ? { ids: err.ids } : {}),
    headers,
    ...(row.log ? { log: row.log } : {}),
  };
}
