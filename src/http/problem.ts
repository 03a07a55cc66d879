import { STATUS_CODES } from 'node:http';
import { CodedError, type ErrorCode } from '../contract/error-codes.ts';
import type { Violation } from '../contract/validator.ts';
import { ERRORS } from './error-registry.ts';

/** An RFC 9457 problem body (`application/problem+json`); its fields come from the code's row (error-registry.ts). */
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

/** An error the HTTP edge raises itself (a parser, a route): answered with its code and message as they are. */
export class ProblemError extends CodedError {
  constructor(
    code: ErrorCode,
    detail: string,
    extra: { errors?: Violation[] } = {},
    options?: { cause?: unknown },
  ) {
    super(code, detail, extra, options);
    this.name = 'ProblemError';
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

/**
 * A whole HTTP/1.1 response with a problem body, for the answers written straight to a socket that
 * Fastify does not hold (a request Node's parser refused or timed out, a CONNECT, a connection past the
 * cap). It closes the connection; `Retry-After` is the code's, `headers` go before `Content-Length`.
 */
export function rawProblemResponse(
  code: ErrorCode,
  detail: string,
  headers: Record<string, string> = {},
): string {
  const body = JSON.stringify(problemBody(code, detail));
  const { status, retryAfterS } = ERRORS[code];
  const extra = { ...(retryAfterS === undefined ? {} : { 'Retry-After': String(retryAfterS) }), ...headers };
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json; charset=utf-8\r\n` +
    Object.entries(extra)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}
