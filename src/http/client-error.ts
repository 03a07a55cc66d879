import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../contract/error-codes.ts';
import { rawProblemResponse } from './problem.ts';

/**
 * Answers the errors Node's HTTP parser raises before a request reaches Fastify (the server's
 * 'clientError' event): malformed requests, a body cut short of its Content-Length, headers too large,
 * headers or body too slow. The answer is the same problem+json as every other error, never Fastify's
 * generic body, and never echoes what the client sent. The connection is closed afterwards: the parser
 * cannot tell where the next request would start.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const [code, detail] = classify(err.code ?? '');
  socket.end(rawProblemResponse(code, detail));
}

function classify(code: string): [ErrorCode, string] {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return ['REQUEST_TIMEOUT', 'the request was not received completely in time'];
    case 'HPE_HEADER_OVERFLOW':
      return ['HEADERS_TOO_LARGE', 'the request headers are larger than the server accepts'];
    case 'HPE_INVALID_EOF_STATE':
      return ['INVALID_REQUEST', 'the connection ended before the request did (is Content-Length right?)'];
    default:
      return ['INVALID_REQUEST', 'the request is not valid HTTP/1.1'];
  }
}
