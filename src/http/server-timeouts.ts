import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { isAnsweredEarly, isLingering, type LingerOptions, lingeringClose } from './lingering-close.ts';
import { rawProblemResponse } from './problem.ts';

/** Slow-client limits, as configured. */
export interface TimeoutOptions extends LingerOptions {
  /** `INTAKE_HEADERS_TIMEOUT_MS`: the request line and headers must arrive within this. */
  headersTimeoutMs: number;
  /** `INTAKE_REQUEST_TIMEOUT_MS`: the whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
}

/**
 * Enforces the headers and request timeouts when they expire, with a problem+json `408`.
 *
 * Node checks both only every `connectionsCheckingInterval` (30 s by default), so a 5 s headers
 * timeout fired anywhere up to 35 s: the server must be created with `connectionsCheckingInterval`
 * from checkingIntervalMs() (app.ts passes it to Fastify's `http` options). Node's own answer is a bare 408
 * (Fastify's, a JSON body of its own); this one is intake's problem body, written only when no
 * response has started, and followed by a lingering close so a client still sending reads it.
 */
export function enforceServerTimeouts(app: FastifyInstance, opts: TimeoutOptions): void {
  const server = app.server;
  server.headersTimeout = opts.headersTimeoutMs;
  server.requestTimeout = opts.requestTimeoutMs;
  const detail =
    `the request was not received in time: the headers must arrive within ${opts.headersTimeoutMs} ms ` +
    `and the whole request within ${opts.requestTimeoutMs} ms`;
  const response = rawProblemResponse('REQUEST_TIMEOUT', detail);

  // Fastify's own handler (and any other) keeps every other client error (400, 431, resets).
  const others = server.listeners('clientError') as Array<(err: Error, socket: Socket) => void>;
  server.removeAllListeners('clientError');
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    // Already answered: the rest of its body is read under the lingering deadlines, not the request
    // timeouts; any other error on a connection being closed closes it (no answer can follow).
    if (socket.destroyed || (timeout && isAnsweredEarly(socket))) return;
    if (isLingering(socket)) {
      socket.destroy();
      return;
    }
    if (!timeout) {
      for (const l of others) l.call(server, err, socket);
      return;
    }
    if (socket.writable) socket.write(response);
    lingeringClose(socket, opts);
  });
}

/**
 * How often Node checks for expired headers and request timeouts: a twentieth of the shorter one (at
 * most every second), so a timeout fires within 5 % of its setting. The check walks only connections
 * with a request in progress, in C++.
 */
export function checkingIntervalMs(opts: { headersTimeoutMs: number; requestTimeoutMs: number }): number {
  return Math.max(
    10,
    Math.min(1000, Math.floor(Math.min(opts.headersTimeoutMs, opts.requestTimeoutMs) / 20)),
  );
}
